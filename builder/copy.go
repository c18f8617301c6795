package builder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"kiln/builder/fileop"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	digest "github.com/opencontainers/go-digest"
)

// copyCmd is what COPY and ADD share.
type copyCmd struct {
	cmd          instructions.Command
	sd           instructions.SourcesAndDest
	from         string
	chown, chmod string
	add          bool
	copyFlags
}

func (c copyCmd) name() string {
	if c.add {
		return "ADD"
	}
	return "COPY"
}

// copyFlags are the flags only some forms of COPY and ADD take.
type copyFlags struct {
	link       bool
	exclude    []string
	parents    bool
	keepGitDir *bool
	checksum   string
	unpack     *bool
}

// newCopyCmd reads a COPY or ADD instruction (expanded) into what the step needs.
func newCopyCmd(cmd instructions.Command) copyCmd {
	switch c := cmd.(type) {
	case *instructions.CopyCommand:
		return copyCmd{cmd: c, sd: c.SourcesAndDest, from: c.From, chown: c.Chown, chmod: c.Chmod,
			copyFlags: copyFlags{link: c.Link, exclude: c.ExcludePatterns, parents: c.Parents}}
	case *instructions.AddCommand:
		return copyCmd{cmd: c, sd: c.SourcesAndDest, chown: c.Chown, chmod: c.Chmod, add: true,
			copyFlags: copyFlags{link: c.Link, exclude: c.ExcludePatterns, keepGitDir: c.KeepGitDir, checksum: c.Checksum, unpack: c.Unpack}}
	}
	return copyCmd{cmd: cmd}
}

// copyPart is one group of sources copied by the step, in Dockerfile order: a run of local
// sources (context, stage or image), a downloaded URL, a git checkout or a heredoc.
type copyPart struct {
	spec fileop.Spec
	// id is the part's identity in the cache key: content, never times.
	id string
	// open gives the directory to copy from (spec.SrcRoot) and its release; nil when SrcRoot
	// is set already.
	open func(ctx context.Context) (string, func() error, error)
}

// copy is COPY and ADD: sources from the context, a stage, an image, URLs, git repositories or
// heredocs, into the stage's snapshot, as BuildKit's Dockerfile frontend does them.
func (bd *build) copy(ctx context.Context, st *stageState, c copyCmd, label string) error {
	fl := c.copyFlags
	if err := bd.expandHeredocs(st, &c); err != nil {
		return err
	}
	spec := fileop.Spec{
		Dest:        c.sd.DestPath,
		Workdir:     st.img.Config.WorkingDir,
		Exclude:     fl.exclude,
		Parents:     fl.parents,
		Instruction: c.name(),
	}
	if err := parseChmod(c.chmod, &spec); err != nil {
		return err
	}
	if c.chown != "" && fl.link && chownByName(c.chown) {
		return fmt.Errorf("--chown=%s: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead", c.chown)
	}
	if fl.checksum != "" {
		switch {
		case !c.add:
			return errors.New("checksum can't be specified for COPY")
		case len(c.sd.SourcePaths) != 1:
			return errors.New("checksum can't be specified for multiple sources")
		}
		if _, isGit, _ := fileop.ParseGitRef(c.sd.SourcePaths[0]); !isGit && !fileop.IsURL(c.sd.SourcePaths[0]) {
			return errors.New("checksum requires HTTP(S) or Git sources")
		}
	}
	// BuildKit makes a --link copy on scratch and merges it, unless --chmod is given.
	link := fl.link && c.chmod == ""

	var tmpDirs []string
	defer func() {
		for _, d := range tmpDirs {
			_ = os.RemoveAll(d)
		}
	}()
	tmpDir := func(prefix string) (string, error) {
		d, err := os.MkdirTemp(bd.b.Store.TmpDir(), prefix)
		if err == nil {
			tmpDirs = append(tmpDirs, d)
		}
		return d, err
	}
	parts, err := bd.copyParts(ctx, st, c, fl, spec, tmpDir)
	if err != nil {
		return err
	}

	ids := make([]string, len(parts))
	for i, p := range parts {
		ids[i] = p.id
	}
	parent := st.chain
	if link {
		parent = "" // a linked layer does not depend on what it lands on
	}
	key := stepKey("copy", parent, c.name(), ids, c.sd.DestPath, spec.Workdir, c.chown, c.chmod,
		fl.exclude, fl.parents, link, fl.unpack)
	step := layerStep{
		label: label, createdBy: copyHistory(c, fl), key: key,
		work: func(ctx context.Context, root string, _ io.Writer) error {
			var owner *fileop.Owner
			if c.chown != "" {
				o, err := resolveChown(root, c.chown)
				if err != nil {
					return err
				}
				owner = &o
			}
			for _, p := range parts {
				s := p.spec
				s.Chown, s.DestRoot = owner, root
				if p.open != nil {
					src, release, err := p.open(ctx)
					if err != nil {
						return err
					}
					s.SrcRoot = src
					err = fileop.Copy(ctx, s)
					if rerr := release(); err == nil && rerr != nil {
						err = rerr
					}
					if err != nil {
						return err
					}
					continue
				}
				if err := fileop.Copy(ctx, s); err != nil {
					return err
				}
			}
			return nil
		},
	}
	// COPY --link copies into an empty snapshot, so the layer (and its cache record) does not
	// depend on the stage below it, as BuildKit's merge of a scratch copy does.
	step.parentless = link
	return bd.layerStep(ctx, st, step)
}

// copyParts resolves every source of c into parts, fetching what the cache key needs: the
// context's checksum, a URL's content, a git ref's commit.
func (bd *build) copyParts(ctx context.Context, st *stageState, c copyCmd, fl copyFlags, spec fileop.Spec,
	tmpDir func(string) (string, error)) ([]copyPart, error) {
	local, err := bd.localSource(ctx, st, c, spec)
	if err != nil {
		return nil, err
	}
	var parts []copyPart
	var run []string // consecutive local sources, copied together
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		p, err := local(ctx, run)
		if err != nil {
			return err
		}
		parts = append(parts, p)
		run = nil
		return nil
	}
	for _, src := range c.sd.SourcePaths {
		g, isGit, gerr := fileop.ParseGitRef(src)
		switch {
		case isGit && gerr != nil:
			return nil, gerr
		case isGit:
			if !c.add {
				return nil, errors.New("source can't be a git ref for COPY")
			}
			if err := flush(); err != nil {
				return nil, err
			}
			p, err := gitPart(ctx, g, fl, spec, tmpDir)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		case fileop.IsURL(src):
			if !c.add {
				return nil, errors.New("source can't be a URL for COPY")
			}
			if err := flush(); err != nil {
				return nil, err
			}
			p, err := bd.urlPart(ctx, src, fl, spec, tmpDir)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		default:
			run = append(run, src)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for _, h := range c.sd.SourceContents {
		p, err := heredocPart(h, spec, tmpDir)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	return parts, nil
}

// localSource returns what makes a part of local sources: from the context (its content
// checksum identifies it), or from a stage or an image (its snapshot's chain ID does).
func (bd *build) localSource(ctx context.Context, st *stageState, c copyCmd, spec fileop.Spec) (func(context.Context, []string) (copyPart, error), error) {
	fl := c.copyFlags
	spec.Extract = c.add && (fl.unpack == nil || *fl.unpack)
	if c.from != "" && !bd.usesLocalSource(c) {
		return nil, nil // only remote sources: no stage to wait for
	}
	src, err := bd.resolveFrom(ctx, st, c.from)
	if errors.Is(err, errLaterStage) {
		return nil, fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage", c.from)
	}
	if err != nil {
		return nil, err
	}
	if src.local() {
		return func(ctx context.Context, srcs []string) (copyPart, error) {
			s := spec
			s.Sources = srcs
			s.SrcRoot, s.Ignore = src.dir, src.ignore
			sum, err := fileop.Checksum(ctx, s)
			if err != nil {
				return copyPart{}, err
			}
			return copyPart{spec: s, id: "context:" + sum.String()}, nil
		}, nil
	}
	layers := src.layers
	spec.KeepOwners = true // files from a stage or an image keep their owners, as in BuildKit
	open := func(ctx context.Context) (string, func() error, error) {
		chain, err := bd.ensureChain(ctx, layers)
		if err != nil {
			return "", nil, err
		}
		if chain == "" {
			dir, err := os.MkdirTemp(bd.b.Store.TmpDir(), "scratch-")
			return dir, func() error { return os.Remove(dir) }, err
		}
		return bd.b.Snaps.View(ctx, chain)
	}
	return func(_ context.Context, srcs []string) (copyPart, error) {
		s := spec
		s.Sources = srcs
		return copyPart{spec: s, id: "snapshot:" + chainOf(layers), open: open}, nil
	}, nil
}

// usesLocalSource tells whether some source of c is a path (not a URL or git repository).
func (bd *build) usesLocalSource(c copyCmd) bool {
	for _, src := range c.sd.SourcePaths {
		if _, isGit, _ := fileop.ParseGitRef(src); !isGit && !fileop.IsURL(src) {
			return true
		}
	}
	return false
}

// urlPart downloads src before the key is made: the key holds the URL and the content's digest,
// so a changed download is a new step and an unchanged one hits the cache (BuildKit checks the
// URL on every build too).
func (bd *build) urlPart(ctx context.Context, src string, fl copyFlags, spec fileop.Spec, tmpDir func(string) (string, error)) (copyPart, error) {
	var want digest.Digest
	if fl.checksum != "" {
		d, err := digest.Parse(fl.checksum)
		if err != nil {
			return copyPart{}, fmt.Errorf("invalid checksum %q: %w", fl.checksum, err)
		}
		want = d
	}
	dir, err := tmpDir("url-")
	if err != nil {
		return copyPart{}, err
	}
	rf, err := fileop.FetchURL(ctx, nil, src, dir, want)
	if err != nil {
		return copyPart{}, err
	}
	s := spec
	s.SrcRoot, s.Sources = dir, []string{rf.Name}
	s.Extract = fl.unpack != nil && *fl.unpack // remote archives stay packed unless --unpack
	mtime := ""
	if rf.LastModified != nil {
		mtime = rf.LastModified.UTC().String()
	}
	return copyPart{spec: s, id: "url:" + src + " " + rf.Name + " " + rf.Digest.String() + " " + mtime}, nil
}

// gitPart resolves a git source's ref to a commit for the key; the checkout happens only when
// the step runs.
func gitPart(ctx context.Context, g *fileop.GitRef, fl copyFlags, spec fileop.Spec, tmpDir func(string) (string, error)) (copyPart, error) {
	if fl.keepGitDir != nil && g.KeepGitDir != nil && *fl.keepGitDir != *g.KeepGitDir {
		return copyPart{}, errors.New("inconsistent keep-git-dir configuration")
	}
	keep := false
	if g.KeepGitDir != nil {
		keep = *g.KeepGitDir
	} else if fl.keepGitDir != nil {
		keep = *fl.keepGitDir
	}
	if fl.checksum != "" && g.Checksum != "" && fl.checksum != g.Checksum {
		return copyPart{}, fmt.Errorf("checksum mismatch %q != %q", fl.checksum, g.Checksum)
	}
	if g.Checksum == "" {
		g.Checksum = fl.checksum
	}
	commit, err := fileop.ResolveGit(ctx, g, keep)
	if err != nil {
		return copyPart{}, err
	}
	s := spec
	s.Sources = []string{"."}
	s.Extract = false
	open := func(ctx context.Context) (string, func() error, error) {
		dir, err := tmpDir("git-")
		if err != nil {
			return "", nil, err
		}
		if err := fileop.CheckoutGit(ctx, g, commit, dir, keep); err != nil {
			return "", nil, err
		}
		return dir, func() error { return nil }, nil
	}
	id := fmt.Sprintf("git:%s %s %s %s keep=%v", g.Remote, commit.Ref, commit.Commit, g.SubDir, keep && g.SubDir == "")
	return copyPart{spec: s, id: id, open: open}, nil
}

// heredocPart writes a COPY <<EOF document as the file BuildKit makes of it: named after the
// heredoc, mode 0644, then copied like any file.
func heredocPart(h instructions.SourceContent, spec fileop.Spec, tmpDir func(string) (string, error)) (copyPart, error) {
	dir, err := tmpDir("heredoc-")
	if err != nil {
		return copyPart{}, err
	}
	name := filepath.Base(filepath.Clean("/" + h.Path))
	if name == "/" {
		return copyPart{}, fmt.Errorf("invalid heredoc name %q", h.Path)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(h.Data), 0o644); err != nil {
		return copyPart{}, err
	}
	if err := os.Chmod(p, 0o644); err != nil {
		return copyPart{}, err
	}
	s := spec
	s.SrcRoot, s.Sources, s.Extract, s.Parents, s.Ignore = dir, []string{name}, false, false, nil
	return copyPart{spec: s, id: "heredoc:" + strconv.Quote(name) + " " + strconv.Quote(h.Data)}, nil
}

// expandHeredocs expands the heredocs of a COPY/ADD whose delimiter was not quoted, as BuildKit
// does: with the stage's variables, a backslash escape and quotes kept as they are.
func (bd *build) expandHeredocs(st *stageState, c *copyCmd) error {
	if len(c.sd.SourceContents) == 0 {
		return nil
	}
	contents := make([]instructions.SourceContent, len(c.sd.SourceContents))
	copy(contents, c.sd.SourceContents)
	for i, h := range contents {
		if !h.Expand {
			continue
		}
		lex := shell.NewLex('\\')
		lex.SkipProcessQuotes = true
		s, _, err := lex.ProcessWord(h.Data, st.runEnv)
		if err != nil {
			return fmt.Errorf("expand heredoc %s: %w", h.Path, err)
		}
		contents[i].Data = s
	}
	c.sd.SourceContents = contents
	return nil
}

// copyHistory is the history entry BuildKit writes for a COPY/ADD.
func copyHistory(c copyCmd, fl copyFlags) string {
	var b strings.Builder
	b.WriteString(c.name())
	if fl.parents {
		b.WriteString(" --parents")
	}
	if c.chown != "" {
		b.WriteString(" --chown=" + c.chown)
	}
	if c.chmod != "" {
		b.WriteString(" --chmod=" + c.chmod)
	}
	for _, s := range c.sd.SourcePaths {
		b.WriteString(" " + s)
	}
	for _, h := range c.sd.SourceContents {
		b.WriteString(" <<" + h.Path)
	}
	b.WriteString(" " + c.sd.DestPath + " # buildkit")
	return b.String()
}

// parseChmod reads --chmod as BuildKit does: an octal mode up to 07777, else a symbolic one.
func parseChmod(chmod string, spec *fileop.Spec) error {
	if chmod == "" {
		return nil
	}
	octalErr := fmt.Errorf("invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", chmod)
	if m, err := strconv.ParseUint(chmod, 8, 32); err == nil {
		if m > 0o7777 {
			return octalErr
		}
		fm := fileop.FromUnixMode(uint32(m))
		spec.Chmod = &fm
		return nil
	}
	ms, err := fileop.ParseModeSet(chmod)
	if errors.Is(err, fileop.ErrModeNumber) {
		return octalErr
	}
	if err != nil {
		return fmt.Errorf("invalid chmod parameter: %w", err)
	}
	spec.ChmodSet = ms
	return nil
}

// stageIndexAny finds a stage by name anywhere in the Dockerfile.
func (bd *build) stageIndexAny(ref string) (int, bool) {
	return bd.stageIndex(ref, len(bd.df.Stages))
}

// chownByName tells whether --chown names a user or group (not numeric IDs or "root").
func chownByName(chown string) bool {
	user, group, _ := strings.Cut(chown, ":")
	if _, err := parseID(user); err != nil {
		return true
	}
	if group == "" {
		return false
	}
	_, err := parseID(group)
	return err != nil
}

func parseID(s string) (int, error) {
	if s == "root" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	return int(n), err
}

// resolveChown resolves --chown=user[:group] as BuildKit does, in the image's own /etc/passwd
// and /etc/group: a user by name gets its primary group, a user by ID that ID as its group; a
// name that is not found (or a missing file) resolves to 0, as BuildKit resolves it.
func resolveChown(root, spec string) (fileop.Owner, error) {
	user, group, _ := strings.Cut(spec, ":")
	var o fileop.Owner
	if id, err := parseID(user); err == nil {
		o = fileop.Owner{UID: id, GID: id}
	} else {
		f, err := lookupIDFile(root, "/etc/passwd", user, 2)
		if err != nil {
			return o, fmt.Errorf("--chown=%s: %w", spec, err)
		}
		if f != nil {
			o.UID, o.GID = f[0], f[1]
		}
	}
	if group == "" {
		return o, nil
	}
	if id, err := parseID(group); err == nil {
		o.GID = id
		return o, nil
	}
	f, err := lookupIDFile(root, "/etc/group", group, 1)
	if err != nil {
		return o, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	if f != nil {
		o.GID = f[0]
	}
	return o, nil
}

// lookupIDFile finds name in a passwd-style file of the image at root and returns the n numeric
// fields after its password field; nil when the file or the name is missing.
func lookupIDFile(root, file, name string, n int) ([]int, error) {
	p, err := fileop.SecureJoin(root, file)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || isNotDir(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 2+n || fields[0] != name {
			continue
		}
		out := make([]int, n)
		for i := range n {
			v, err := strconv.Atoi(fields[2+i])
			if err != nil {
				return nil, fmt.Errorf("%s: bad entry for %s", file, name)
			}
			out[i] = v
		}
		return out, nil
	}
	return nil, sc.Err()
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }
