package fileop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// GitRef is a git repository source of ADD, as BuildKit's Dockerfile
// frontend reads one: "https://host/repo.git#ref:subdir", "git://host/repo",
// "ssh://...", "git@host:org/repo.git#ref", with the query forms
// "?ref=...&subdir=...&tag=...&branch=...&checksum=...&keep-git-dir=...".
type GitRef struct {
	Remote     string // the URL handed to git, without fragment or query
	Ref        string // branch, tag, full ref name or commit; "" is the default branch
	SubDir     string // clean, relative; "" is the whole repository
	Checksum   string // a commit (or prefix) the ref must resolve to
	KeepGitDir *bool
	Submodules *bool
}

var (
	gitProtoRe = regexp.MustCompile(`^[a-zA-Z0-9]+://`)
	gitSCPRe   = regexp.MustCompile(`^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:\?(.*?))?(?:#(.*))?$`)
)

// ParseGitRef tells whether src names a git repository the way BuildKit
// decides it for ADD: git://, ssh:// and scp-like user@host:path sources
// always do, http(s):// ones when their path ends in ".git". isGit with an
// error means a malformed git source; not isGit means src is something else
// (a URL to download or a local path).
func ParseGitRef(src string) (ref *GitRef, isGit bool, err error) {
	if strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../") || strings.HasPrefix(src, "github.com/") {
		return nil, false, nil // local paths (BuildKit keeps github.com/x for contexts only)
	}
	var frag string
	var query url.Values
	var res GitRef
	if proto := gitProtoRe.FindString(src); proto != "" {
		scheme := strings.ToLower(strings.TrimSuffix(proto, "://"))
		switch scheme {
		case "http", "https", "ssh", "git":
		default:
			return nil, false, nil
		}
		u, err := url.Parse(src)
		if err != nil {
			return nil, false, nil
		}
		if (scheme == "http" || scheme == "https") && !strings.HasSuffix(u.Path, ".git") {
			return nil, false, nil
		}
		frag, query = u.Fragment, u.Query()
		u.Fragment, u.RawFragment, u.RawQuery = "", "", ""
		res.Remote = u.String()
	} else if m := gitSCPRe.FindStringSubmatch(src); m != nil {
		frag = m[5]
		if m[4] != "" {
			if query, err = url.ParseQuery(m[4]); err != nil {
				return nil, true, fmt.Errorf("git source %q: invalid query: %w", src, err)
			}
		}
		res.Remote = m[1] + "@" + m[2] + ":" + m[3]
	} else {
		return nil, false, nil
	}
	if frag != "" {
		r, sub, _ := strings.Cut(frag, ":")
		res.Ref, res.SubDir = r, strings.TrimPrefix(path.Join("/", sub), "/")
	}
	if err := res.loadQuery(query); err != nil {
		return nil, true, fmt.Errorf("git source %q: %w", src, err)
	}
	return &res, true, nil
}

func (g *GitRef) loadQuery(q url.Values) error {
	var tag, branch string
	boolOpt := func(k string, v []string) (*bool, error) {
		b := true
		if len(v) > 0 && v[0] != "" {
			var err error
			if b, err = strconv.ParseBool(v[0]); err != nil {
				return nil, fmt.Errorf("invalid %s value: %q", k, v[0])
			}
		}
		return &b, nil
	}
	for k, v := range q {
		if len(v) > 1 {
			return fmt.Errorf("query %q has multiple values", k)
		}
		empty := len(v) == 0 || v[0] == ""
		if empty && k != "submodules" && k != "keep-git-dir" && k != "fetch-by-commit" {
			return fmt.Errorf("query %q has no value", k)
		}
		switch k {
		case "ref":
			if g.Ref != "" && g.Ref != v[0] {
				return fmt.Errorf("ref conflicts: %q vs %q", g.Ref, v[0])
			}
			g.Ref = v[0]
		case "tag":
			tag = v[0]
		case "branch":
			branch = v[0]
		case "subdir":
			sub := strings.TrimPrefix(path.Join("/", v[0]), "/")
			if g.SubDir != "" && g.SubDir != sub {
				return fmt.Errorf("subdir conflicts: %q vs %q", g.SubDir, v[0])
			}
			g.SubDir = sub
		case "checksum", "commit":
			g.Checksum = v[0]
		case "keep-git-dir":
			b, err := boolOpt(k, v)
			if err != nil {
				return err
			}
			g.KeepGitDir = b
		case "submodules":
			b, err := boolOpt(k, v)
			if err != nil {
				return err
			}
			g.Submodules = b
		case "mtime", "fetch-by-commit":
			// accepted; checkout times and fetching stay as kiln does them
		default:
			return fmt.Errorf("unexpected query %q", k)
		}
	}
	if tag != "" {
		if branch != "" {
			return errors.New("branch conflicts with tag")
		}
		if !strings.HasPrefix(tag, "refs/tags/") {
			tag = "refs/tags/" + tag
		}
		if g.Ref != "" && g.Ref != tag {
			return fmt.Errorf("ref conflicts: %q vs %q", g.Ref, tag)
		}
		g.Ref = tag
	}
	if branch != "" {
		if !strings.HasPrefix(branch, "refs/heads/") {
			branch = "refs/heads/" + branch
		}
		if g.Ref != "" && g.Ref != branch {
			return fmt.Errorf("ref conflicts: %q vs %q", g.Ref, branch)
		}
		g.Ref = branch
	}
	return nil
}

// GitCommit is a git source's ref resolved on its remote.
type GitCommit struct {
	Ref    string // the full ref that matched ("" for a commit given as the ref)
	Commit string // what is checked out: the commit, or an annotated tag's commit
}

// IsCommitSHA tells a full SHA-1 or SHA-256 object name.
func IsCommitSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ResolveGit finds the commit g names on its remote with `git ls-remote`,
// preferring, as BuildKit does, an exact ref, then a branch, then a tag (an
// annotated tag resolves to its commit unless the .git directory is kept).
// A checksum must be a prefix of the result.
func ResolveGit(ctx context.Context, g *GitRef, keepGitDir bool) (GitCommit, error) {
	if IsCommitSHA(g.Ref) {
		if g.Checksum != "" && !strings.HasPrefix(g.Ref, g.Checksum) {
			return GitCommit{}, fmt.Errorf("expected checksum to match %s, got %s: %w", g.Checksum, g.Ref, ErrChecksumMismatch)
		}
		return GitCommit{Commit: g.Ref}, nil
	}
	ref := g.Ref
	if ref == "" {
		out, err := runGit(ctx, "", "ls-remote", "--symref", "--", g.Remote, "HEAD")
		if err != nil {
			return GitCommit{}, fmt.Errorf("find default branch of %s: %w", g.Remote, err)
		}
		for _, line := range strings.Split(out, "\n") {
			if r, ok := strings.CutPrefix(line, "ref: "); ok {
				ref, _, _ = strings.Cut(r, "\t")
				break
			}
		}
		if ref == "" {
			return GitCommit{}, fmt.Errorf("could not find default branch for repository: %s", g.Remote)
		}
	}
	out, err := runGit(ctx, "", "ls-remote", "--", g.Remote, ref, ref+"^{}")
	if err != nil {
		return GitCommit{}, fmt.Errorf("resolve %s in %s: %w", ref, g.Remote, err)
	}
	var (
		exact   = "refs/" + strings.TrimPrefix(ref, "refs/")
		head    = "refs/heads/" + strings.TrimPrefix(ref, "refs/heads/")
		tag     = "refs/tags/" + strings.TrimPrefix(ref, "refs/tags/")
		peeled  = tag + "^{}"
		sha     string
		used    string
		headSHA string
		tagSHA  string
		peelSHA string
	)
	for _, line := range strings.Split(out, "\n") {
		s, r, _ := strings.Cut(line, "\t")
		switch r {
		case head:
			headSHA = s
		case tag:
			tagSHA = s
		case peeled:
			peelSHA = s
		case exact:
			sha, used = s, r
		}
	}
	if sha == "" && headSHA != "" {
		sha, used = headSHA, head
	}
	if sha != "" {
		peelSHA = ""
	} else if tagSHA != "" {
		sha, used = tagSHA, tag
	}
	if sha == "" {
		return GitCommit{}, fmt.Errorf("repository %s does not contain ref %s", g.Remote, ref)
	}
	if g.Checksum != "" && !strings.HasPrefix(sha, g.Checksum) && (peelSHA == "" || !strings.HasPrefix(peelSHA, g.Checksum)) {
		return GitCommit{}, fmt.Errorf("expected checksum to match %s, got %s: %w", g.Checksum, sha, ErrChecksumMismatch)
	}
	res := GitCommit{Ref: used, Commit: sha}
	if peelSHA != "" && !keepGitDir {
		res.Commit = peelSHA
	}
	return res, nil
}

// CheckoutGit checks out c from g's remote into dir (empty, existing) with
// the git program: a shallow fetch of the resolved ref (or commit), the
// files of g.SubDir moved to dir's top, modes normalised to what git
// records (0644, 0755), submodules updated unless g.Submodules is false.
// The .git directory is kept only when keepGitDir is set and no subdir is
// named, as BuildKit does.
func CheckoutGit(ctx context.Context, g *GitRef, c GitCommit, dir string, keepGitDir bool) error {
	keep := keepGitDir && g.SubDir == ""
	work := dir
	if g.SubDir != "" {
		var err error
		if work, err = os.MkdirTemp(dir, ".checkout-"); err != nil {
			return err
		}
	}
	pull := c.Commit
	if c.Ref != "" {
		pull = c.Ref + ":" + c.Ref
	}
	steps := [][]string{
		{"-c", "init.defaultBranch=master", "init", "-q"},
		{"remote", "add", "origin", g.Remote},
		{"fetch", "-q", "-u", "--depth=1", "--no-tags", "--", "origin", pull},
		{"-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"},
	}
	for _, args := range steps {
		if _, err := runGit(ctx, work, args...); err != nil {
			return fmt.Errorf("checkout %s of %s: %w", c.Commit, g.Remote, err)
		}
	}
	// The commit pinned in the cache key is what must be checked out.
	head, err := runGit(ctx, work, "rev-parse", "HEAD", c.Commit+"^{commit}")
	if err != nil {
		return fmt.Errorf("checkout %s of %s (the ref moved?): %w", c.Commit, g.Remote, err)
	}
	if got := strings.Fields(head); len(got) != 2 || got[0] != got[1] {
		return fmt.Errorf("checkout of %s: got commit %s, want %s (the ref moved?)", g.Remote, strings.Join(got, " "), c.Commit)
	}
	if g.Submodules == nil || *g.Submodules {
		if _, err := os.Stat(filepath.Join(work, ".gitmodules")); err == nil {
			if _, err := runGit(ctx, work, "submodule", "update", "--init", "--recursive", "--depth=1"); err != nil {
				return fmt.Errorf("update submodules of %s: %w", g.Remote, err)
			}
		}
	}
	if keep {
		_, _ = runGit(ctx, work, "reflog", "expire", "--all", "--expire=now")
		_ = os.Remove(filepath.Join(work, ".git", "FETCH_HEAD"))
	} else if err := os.RemoveAll(filepath.Join(work, ".git")); err != nil {
		return err
	}
	if g.SubDir != "" {
		if err := moveSubdir(work, g.SubDir, dir); err != nil {
			return fmt.Errorf("git source %s: %w", g.Remote, err)
		}
		if err := os.RemoveAll(work); err != nil {
			return err
		}
	}
	return normaliseGitModes(dir, keep)
}

// moveSubdir moves the entries of work/sub to dir. Every component of sub
// must be a real directory: a symlink could point out of the checkout.
func moveSubdir(work, sub, dir string) error {
	cur := work
	for _, part := range strings.Split(sub, "/") {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return fmt.Errorf("invalid subdir %s: %w", sub, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("invalid subdir %s: %s is not a directory", sub, part)
		}
	}
	ents, err := os.ReadDir(cur)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(cur, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// normaliseGitModes gives the checked-out files the modes git records,
// whatever this process's umask was: 0755 for directories and executables,
// 0644 for other files.
func normaliseGitModes(dir string, skipGitDir bool) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if skipGitDir && d.IsDir() && p == filepath.Join(dir, ".git") {
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m := os.FileMode(0o644)
		if d.IsDir() || fi.Mode()&0o100 != 0 {
			m = 0o755
		}
		if fi.Mode().Perm() == m {
			return nil
		}
		return os.Chmod(p, m)
	})
}

// runGit runs git in dir (none when empty) without prompts or system-wide
// configuration, and returns its standard output; a failure carries git's
// standard error.
func runGit(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_ASKPASS=true")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return "", fmt.Errorf("git %s: %w", args[0], err)
		}
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, msg)
	}
	return stdout.String(), nil
}
