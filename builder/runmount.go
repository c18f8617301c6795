package builder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"

	"kiln/builder/fileop"
	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// runMount is one RUN --mount, resolved when the step is planned: its part of the step's cache
// key, and how to set it up for the sandbox once the step runs (only on a cache miss).
type runMount struct {
	key       mountKey
	setup     func(ctx context.Context, m *mountSet) error
	sshTarget string // an ssh mount's socket path in the sandbox
}

// mountKey is what a mount adds to the step's cache key. Content goes in only where it decides
// the result: a bind's source; never a cache mount's files or a secret.
type mountKey struct {
	Type     string  `json:"type"`
	Target   string  `json:"target,omitempty"`
	Source   string  `json:"source,omitempty"` // bind: the checksum or chain ID of the source, and its path
	ID       string  `json:"id,omitempty"`
	Sharing  string  `json:"sharing,omitempty"`
	ReadOnly bool    `json:"ro,omitempty"`
	Size     int64   `json:"size,omitempty"`
	Env      *string `json:"env,omitempty"`
	Required bool    `json:"required,omitempty"`
	Mode     *uint64 `json:"mode,omitempty"`
	UID      *uint64 `json:"uid,omitempty"`
	GID      *uint64 `json:"gid,omitempty"`
}

// mountSet collects what the step's mounts need from the sandbox, and how to undo it.
type mountSet struct {
	mounts   []kilnrt.Mount
	env      []string
	releases []func() error
}

func (s *mountSet) add(m kilnrt.Mount)       { s.mounts = append(s.mounts, m) }
func (s *mountSet) onRelease(f func() error) { s.releases = append(s.releases, f) }

// release undoes the set-up, newest first.
func (s *mountSet) release() error {
	var errs []error
	for i := len(s.releases) - 1; i >= 0; i-- {
		if err := s.releases[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.releases = nil
	return errors.Join(errs...)
}

// sorted returns the sandbox mounts ordered by target, as BuildKit orders an exec's mounts: a
// mount inside another one's target comes after it.
func (s *mountSet) sorted() []kilnrt.Mount {
	out := slices.Clone(s.mounts)
	slices.SortStableFunc(out, func(a, b kilnrt.Mount) int { return cmp.Compare(a.Target, b.Target) })
	return out
}

// runMounts resolves the RUN's --mount flags, as BuildKit's dispatchRunMounts does. sshIndex
// numbers the ssh mounts for their default targets.
func (bd *build) runMounts(ctx context.Context, st *stageState, c *instructions.RunCommand) ([]runMount, error) {
	var out []runMount
	var secrets map[string]secretSource
	var agents map[string]sshSource
	sshIndex := 0
	for _, m := range instructions.GetMounts(c) {
		switch m.Type {
		case instructions.MountTypeSecret:
			if secrets == nil {
				var err error
				if secrets, err = parseSecrets(bd.opts.Secrets); err != nil {
					return nil, err
				}
			}
			rm, err := secretMount(m, secrets)
			if err != nil {
				return nil, err
			}
			out = append(out, rm)
			continue
		case instructions.MountTypeSSH:
			if agents == nil {
				var err error
				if agents, err = parseSSH(bd.opts.SSH); err != nil {
					return nil, err
				}
			}
			rm, err := bd.sshMount(m, sshIndex, agents)
			if err != nil {
				return nil, err
			}
			sshIndex++
			out = append(out, rm)
			continue
		}
		target := m.Target
		if !path.IsAbs(path.Clean(target)) {
			target = path.Join("/", st.img.Config.WorkingDir, target)
		}
		target = path.Clean(target)
		if target == "/" {
			return nil, fmt.Errorf("invalid mount target %q", target)
		}
		var rm runMount
		var err error
		switch m.Type {
		case instructions.MountTypeBind:
			rm, err = bd.bindMount(ctx, st, m, target)
		case instructions.MountTypeCache:
			rm, err = bd.cacheMount(ctx, st, m, target)
		case instructions.MountTypeTmpfs:
			size := m.SizeLimit
			rm = runMount{
				key: mountKey{Type: "tmpfs", Target: target, Size: size},
				setup: func(_ context.Context, s *mountSet) error {
					s.add(kilnrt.Mount{Type: "tmpfs", Target: target, Size: size})
					return nil
				},
			}
		default:
			err = fmt.Errorf("unsupported mount type %q", m.Type)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rm)
	}
	return out, nil
}

// mountSource is the tree a bind or cache mount takes its files from: a local directory (the
// context, or a named build context), an earlier stage or an image.
type mountSource struct {
	fromSource
	chain string
}

// mountFrom resolves a mount's from= (nothing: the build context).
func (bd *build) mountFrom(ctx context.Context, st *stageState, m *instructions.Mount) (mountSource, error) {
	src, err := bd.resolveFrom(ctx, st, m.From)
	if errors.Is(err, errLaterStage) {
		return mountSource{}, fmt.Errorf("cannot mount from stage %q to %q, stage needs to be defined before current command", m.From, m.Target)
	}
	if err != nil {
		return mountSource{}, err
	}
	src.layers = slices.Clone(src.layers)
	return mountSource{fromSource: src, chain: chainOf(src.layers)}, nil
}

// view makes the source's files readable at a path until release. With writable, the path is
// a throwaway copy-on-write snapshot over the source: what the step writes there is discarded.
func (bd *build) viewSource(ctx context.Context, src mountSource, writable bool) (string, func() error, error) {
	chain, err := bd.ensureChain(ctx, src.layers)
	if err != nil {
		return "", nil, err
	}
	snaps := bd.b.Snaps
	if writable {
		active, err := snaps.Prepare(ctx, chain)
		if err != nil {
			return "", nil, fmt.Errorf("prepare mount snapshot: %w", err)
		}
		return active.Root, func() error { return snaps.Abort(context.WithoutCancel(ctx), active) }, nil
	}
	if chain == "" {
		dir, err := os.MkdirTemp(bd.b.Store.TmpDir(), "scratch-")
		if err != nil {
			return "", nil, err
		}
		return dir, func() error { return os.Remove(dir) }, nil
	}
	return snaps.View(ctx, chain)
}

// bindMount is type=bind: the source's files at the target, read-only unless rw, and then the
// step's writes are discarded. The source's content is part of the key, as COPY's is.
func (bd *build) bindMount(ctx context.Context, st *stageState, m *instructions.Mount, target string) (runMount, error) {
	src, err := bd.mountFrom(ctx, st, m)
	if err != nil {
		return runMount{}, err
	}
	source := path.Join("/", m.Source)
	key := mountKey{Type: "bind", Target: target, ReadOnly: m.ReadOnly}
	if src.local() {
		sum, err := fileop.Checksum(ctx, contextSpec(src.fromSource, source))
		if err != nil {
			return runMount{}, fmt.Errorf("mount %s: %w", target, err)
		}
		key.Source = "context:" + sum.String() + ":" + source
	} else {
		key.Source = "snapshot:" + src.chain + ":" + source
	}
	ro := m.ReadOnly
	return runMount{key: key, setup: func(ctx context.Context, s *mountSet) error {
		root, rel := "", source
		if src.local() {
			dir, r, err := bd.contextCopy(ctx, src.fromSource, source)
			if err != nil {
				return fmt.Errorf("mount %s: %w", target, err)
			}
			s.onRelease(func() error { return os.RemoveAll(dir) })
			root, rel = dir, r
		} else {
			dir, release, err := bd.viewSource(ctx, src, !ro)
			if err != nil {
				return fmt.Errorf("mount %s: %w", target, err)
			}
			s.onRelease(release)
			root = dir
		}
		p, err := fileop.SecureJoin(root, rel)
		if err != nil {
			return fmt.Errorf("mount %s: %w", target, err)
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("mount %s: source %s: %w", target, m.Source, err)
		}
		s.add(kilnrt.Mount{Type: "bind", Source: p, Target: target, ReadOnly: ro})
		return nil
	}}, nil
}

// contextSpec is the context's files at source (a path in the context), as the step sees them:
// .dockerignore applied.
func contextSpec(src fromSource, source string) fileop.Spec {
	return fileop.Spec{
		SrcRoot: src.dir, Ignore: src.ignore, Sources: []string{source},
		Dest: "/", Workdir: "/", Instruction: "RUN --mount",
	}
}

// contextCopy copies the context's files at source into a new directory and returns it and
// the path in it to bind: "/" for a directory source, "/NAME" for a file. A copy, not the
// context itself, because BuildKit's steps see the context as it was sent: .dockerignore
// applied, every file owned by root; and writes to a read-write mount must never reach the
// user's files.
func (bd *build) contextCopy(ctx context.Context, src fromSource, source string) (string, string, error) {
	p, err := fileop.SecureJoin(src.dir, source)
	if err != nil {
		return "", "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", "", fmt.Errorf("source %s: %w", source, err)
	}
	dir, err := os.MkdirTemp(bd.b.Store.TmpDir(), "bind-")
	if err != nil {
		return "", "", err
	}
	spec := contextSpec(src, source)
	spec.DestRoot = dir
	rel, mode := "/", fi.Mode().Perm()
	if !fi.IsDir() {
		rel, mode = "/"+filepath.Base(p), 0o755
		spec.Dest = rel
	}
	if err := fileop.Copy(ctx, spec); err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	if err := os.Chmod(dir, mode); err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	return dir, rel, nil
}
