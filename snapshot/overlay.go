package snapshot

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Overlay keeps snapshots as overlayfs layers: a committed snapshot's fs is its own upper dir
// (overlay format), and a chain of them is mounted as the lowers of a new writable snapshot.
type Overlay struct {
	store
}

var _ Snapshotter = (*Overlay)(nil)

// NewOverlay opens the overlay snapshots kept under dir.
func NewOverlay(dir string) (*Overlay, error) {
	st, err := newStore(dir, KindOverlay)
	if err != nil {
		return nil, err
	}
	return &Overlay{st}, nil
}

// Dir is the directory the snapshots live in.
func (s *Overlay) Dir() string { return s.dir }

// lowers returns the fs dirs of the chain ending at chainID, topmost first.
func (s *Overlay) lowers(chainID string) ([]string, error) {
	var out []string
	for c := chainID; c != ""; {
		m, err := s.readMeta(c)
		if err != nil {
			return nil, err
		}
		if m.Kind != KindOverlay {
			return nil, fmt.Errorf("snapshot %s is a %s snapshot, not overlay", c, m.Kind)
		}
		p, err := s.chainPath(c, "fs")
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		c = m.Parent
		if len(out) > 4096 {
			return nil, fmt.Errorf("snapshot %s: parent chain loops", chainID)
		}
	}
	return out, nil
}

// Prepare makes a writable snapshot over parent and mounts it at the returned Active's Root.
func (s *Overlay) Prepare(ctx context.Context, parent string) (*Active, error) {
	lowers, err := s.lowers(parent)
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot over %q: %w", parent, err)
	}
	id, err := s.newWorkDir("active")
	if err != nil {
		return nil, err
	}
	a, err := s.prepare(id, parent, lowers)
	if err != nil {
		unmount(s.path(id, "merged"))
		s.trash(id)
		return nil, fmt.Errorf("prepare snapshot over %q: %w", parent, err)
	}
	return a, nil
}

func (s *Overlay) prepare(id, parent string, lowers []string) (*Active, error) {
	for _, d := range []string{"fs", "work", "merged"} {
		if err := os.Mkdir(s.path(id, d), 0o755); err != nil {
			return nil, err
		}
	}
	if len(lowers) > 0 {
		// The merged root takes its attributes from the upper root.
		if err := copyAttrs(lowers[0], s.path(id, "fs")); err != nil {
			return nil, err
		}
	} else {
		lowers = []string{s.path("empty")}
	}
	o := overlayMount{lowers: lowers, upper: s.path(id, "fs"), work: s.path(id, "work"), target: s.path(id, "merged")}
	if err := mountOverlay(o); err != nil {
		return nil, err
	}
	return &Active{Root: o.target, Parent: parent, ID: id}, nil
}

// copyAttrs gives dst the owner, mode, xattrs and times of src.
func copyAttrs(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	at, err := statAttrs(src, &st)
	if err != nil {
		return err
	}
	return setAttrs(dst, false, at, false)
}

// Commit unmounts a and writes the changes in its upper dir against its lower dirs as a layer
// to w; the upper dir becomes the committed snapshot of the resulting chain ID.
func (s *Overlay) Commit(ctx context.Context, a *Active, w io.Writer, opts CommitOptions) (Layer, string, error) {
	if err := checkWorkName(a.ID); err != nil {
		return Layer{}, "", err
	}
	lowers, err := s.lowers(a.Parent)
	if err != nil {
		return Layer{}, "", fmt.Errorf("commit snapshot %s: %w", a.ID, err)
	}
	if err := unmount(s.path(a.ID, "merged")); err != nil {
		return Layer{}, "", fmt.Errorf("commit snapshot %s: %w", a.ID, err)
	}
	l, stats, err := writeUpperLayer(ctx, s.path(a.ID, "fs"), lowers, w, opts)
	if err != nil {
		return Layer{}, "", fmt.Errorf("commit snapshot %s: %w", a.ID, err)
	}
	chain := ChainID(a.Parent, l.DiffID)
	if s.Has(chain) {
		return l, chain, s.trash(a.ID)
	}
	// work/ holds only overlay's empty scratch dirs, merged/ is an empty mount point.
	for _, d := range []string{"work", "merged"} {
		if err := os.RemoveAll(s.path(a.ID, d)); err != nil {
			return Layer{}, "", fmt.Errorf("commit snapshot %s: %w", a.ID, err)
		}
	}
	m := meta{Kind: KindOverlay, ChainID: chain, Parent: a.Parent, DiffID: l.DiffID, Size: stats.size, Whiteouts: stats.whiteouts}
	if err := s.publish(a.ID, m); err != nil {
		return Layer{}, "", err
	}
	return l, chain, nil
}

// Abort unmounts a and throws it away.
func (s *Overlay) Abort(ctx context.Context, a *Active) error {
	if err := checkWorkName(a.ID); err != nil {
		return err
	}
	if err := unmount(s.path(a.ID, "merged")); err != nil {
		return fmt.Errorf("abort snapshot %s: %w", a.ID, err)
	}
	return s.trash(a.ID)
}

// Apply makes the snapshot parent+layer from the uncompressed layer tar r, verified against
// diffID.
func (s *Overlay) Apply(ctx context.Context, parent string, diffID digest.Digest, r io.Reader) (string, error) {
	chain := ChainID(parent, diffID)
	if s.Has(chain) {
		return chain, nil
	}
	lowers, err := s.lowers(parent)
	if err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	id, err := s.newWorkDir("apply")
	if err != nil {
		return "", err
	}
	ap := &applier{ctx: ctx, root: s.path(id, "fs"), overlay: true, lowers: lowers, created: map[string]bool{}}
	if err := s.applyInto(ap, lowers, diffID, r); err != nil {
		s.trash(id)
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	m := meta{Kind: KindOverlay, ChainID: chain, Parent: parent, DiffID: diffID, Size: ap.size, Whiteouts: ap.wh}
	if err := s.publish(id, m); err != nil {
		return "", err
	}
	return chain, nil
}

func (s *Overlay) applyInto(ap *applier, lowers []string, diffID digest.Digest, r io.Reader) error {
	if err := os.Mkdir(ap.root, 0o755); err != nil {
		return err
	}
	if len(lowers) > 0 {
		if err := copyAttrs(lowers[0], ap.root); err != nil {
			return err
		}
	}
	if err := applyVerified(ap, diffID, r); err != nil {
		return err
	}
	return syncFS(ap.root)
}

// applyVerified applies r with ap and checks the tar's digest (including what follows the end
// of the archive) against diffID.
func applyVerified(ap *applier, diffID digest.Digest, r io.Reader) error {
	if err := diffID.Validate(); err != nil {
		return fmt.Errorf("diff ID: %w", err)
	}
	h := sha256.New()
	tee := io.TeeReader(r, h)
	if err := ap.apply(tee); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != diffID {
		return fmt.Errorf("layer tar has digest %s, not %s", got, diffID)
	}
	return nil
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// View makes the files of chainID readable at root until release is called: the snapshot's own
// dir when it is a single layer without whiteouts, else a read-only overlay of its chain.
func (s *Overlay) View(ctx context.Context, chainID string) (string, func() error, error) {
	noop := func() error { return nil }
	if chainID == "" {
		return s.path("empty"), noop, nil
	}
	m, err := s.readMeta(chainID)
	if err != nil {
		return "", nil, fmt.Errorf("view snapshot: %w", err)
	}
	lowers, err := s.lowers(chainID)
	if err != nil {
		return "", nil, fmt.Errorf("view snapshot %s: %w", chainID, err)
	}
	if len(lowers) == 1 && !m.Whiteouts {
		return lowers[0], noop, nil
	}
	if len(lowers) == 1 {
		// A lower-only overlay wants two layers; the empty dir adds nothing.
		lowers = append(lowers, s.path("empty"))
	}
	id, err := s.newWorkDir("view")
	if err != nil {
		return "", nil, err
	}
	target := s.path(id, "merged")
	if err := os.Mkdir(target, 0o755); err != nil {
		s.discard(id)
		return "", nil, err
	}
	if err := mountOverlay(overlayMount{lowers: lowers, target: target}); err != nil {
		s.discard(id)
		return "", nil, fmt.Errorf("view snapshot %s: %w", chainID, err)
	}
	release := func() error {
		if err := unmount(target); err != nil {
			return err
		}
		return s.discard(id)
	}
	return target, release, nil
}

// Remove moves the committed snapshot chainID to the trash. It refuses while other committed
// snapshots stack on it (their mounts would lose a lower).
func (s *Overlay) Remove(ctx context.Context, chainID string) error {
	infos, err := s.List(ctx)
	if err != nil {
		return err
	}
	for _, in := range infos {
		if in.Parent == chainID {
			return fmt.Errorf("remove snapshot %s: %w (%s)", chainID, ErrHasChildren, in.ChainID)
		}
	}
	return s.remove(chainID)
}

// Cleanup deletes what was removed; see the package function Cleanup.
func (s *Overlay) Cleanup(ctx context.Context) error { return Cleanup(ctx, s.dir) }
