package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Copy keeps each snapshot as a full tree: Prepare copies the parent's tree, Commit diffs the
// copy against it. It needs no mounts, for where overlay mounts are refused; its layers are the
// same bytes as Overlay's for the same changes.
type Copy struct {
	store
}

var _ Snapshotter = (*Copy)(nil)

// NewCopy opens the copy snapshots kept under dir.
func NewCopy(dir string) (*Copy, error) {
	st, err := newStore(dir, KindCopy)
	if err != nil {
		return nil, err
	}
	return &Copy{st}, nil
}

// Dir is the directory the snapshots live in.
func (s *Copy) Dir() string { return s.dir }

// Files an active copy snapshot keeps beside fs/.
const (
	dirsFile  = "dirs"  // inode of each dir as copied: tells a dir remade from one kept
	stampFile = "stamp" // made right after the copy: its ctime splits copied from changed files
)

func (s *Copy) fsOf(chainID string) (string, error) {
	if chainID == "" {
		return s.path("empty"), nil
	}
	m, err := s.readMeta(chainID)
	if err != nil {
		return "", err
	}
	if m.Kind != KindCopy {
		return "", fmt.Errorf("snapshot %s is a %s snapshot, not copy", chainID, m.Kind)
	}
	return s.chainPath(chainID, "fs")
}

// Prepare copies the tree of parent into a new snapshot; Root is that copy.
func (s *Copy) Prepare(ctx context.Context, parent string) (*Active, error) {
	src, err := s.fsOf(parent)
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot over %q: %w", parent, err)
	}
	id, err := s.newWorkDir("active")
	if err != nil {
		return nil, err
	}
	if err := s.prepare(ctx, id, src); err != nil {
		s.trash(id)
		return nil, fmt.Errorf("prepare snapshot over %q: %w", parent, err)
	}
	return &Active{Root: s.path(id, "fs"), Parent: parent, ID: id}, nil
}

func (s *Copy) prepare(ctx context.Context, id, src string) error {
	tc, err := copyTree(ctx, src, s.path(id, "fs"))
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for p, ino := range tc.dirs {
		b.WriteString(strconv.FormatUint(ino, 10))
		b.WriteByte(0)
		b.WriteString(p)
		b.WriteByte(0)
	}
	if err := os.WriteFile(s.path(id, dirsFile), b.Bytes(), 0o600); err != nil {
		return err
	}
	return writeStamp(s.path(id, stampFile))
}

// writeStamp makes the stamp file and waits until its ctime is later than any time the copy
// could have set (the file system clock is coarse), so "ctime or birth time at or after the
// stamp's" means "changed after the copy".
func writeStamp(p string) error {
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return err
	}
	var first, st unix.Stat_t
	if err := unix.Lstat(p, &first); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Second)
	for mode := uint32(0o400); ; mode ^= 0o200 {
		if err := unix.Chmod(p, mode); err != nil {
			return err
		}
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Ctim.Sec > first.Ctim.Sec || st.Ctim.Sec == first.Ctim.Sec && st.Ctim.Nsec > first.Ctim.Nsec {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stamp %s: file system clock does not advance", p)
		}
		time.Sleep(500 * time.Microsecond)
	}
}

func (s *Copy) readDirs(id string) (map[string]uint64, error) {
	b, err := os.ReadFile(s.path(id, dirsFile))
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, 0); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return 0, nil, fmt.Errorf("truncated dirs file")
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		ino, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("dirs file: %w", err)
		}
		if !sc.Scan() {
			return nil, fmt.Errorf("dirs file: truncated")
		}
		out[sc.Text()] = ino
	}
	return out, sc.Err()
}

// Commit diffs a's tree against its parent's and writes the changes as a layer to w; the tree
// becomes the committed snapshot of the resulting chain ID.
func (s *Copy) Commit(ctx context.Context, a *Active, w io.Writer, opts CommitOptions) (Layer, string, error) {
	if err := checkWorkName(a.ID); err != nil {
		return Layer{}, "", err
	}
	l, size, err := s.commitLayer(ctx, a, w, opts)
	if err != nil {
		return Layer{}, "", fmt.Errorf("commit snapshot %s: %w", a.ID, err)
	}
	chain := ChainID(a.Parent, l.DiffID)
	if s.Has(chain) {
		return l, chain, s.trash(a.ID)
	}
	for _, f := range []string{dirsFile, stampFile} {
		if err := os.Remove(s.path(a.ID, f)); err != nil {
			return Layer{}, "", fmt.Errorf("commit snapshot %s: %w", a.ID, err)
		}
	}
	if err := syncFS(s.path(a.ID, "fs")); err != nil {
		return Layer{}, "", err
	}
	m := meta{Kind: KindCopy, ChainID: chain, Parent: a.Parent, DiffID: l.DiffID, Size: size}
	if err := s.publish(a.ID, m); err != nil {
		return Layer{}, "", err
	}
	return l, chain, nil
}

func (s *Copy) commitLayer(ctx context.Context, a *Active, w io.Writer, opts CommitOptions) (Layer, int64, error) {
	old, err := s.fsOf(a.Parent)
	if err != nil {
		return Layer{}, 0, err
	}
	dirs, err := s.readDirs(a.ID)
	if err != nil {
		return Layer{}, 0, err
	}
	var stamp unix.Stat_t
	if err := unix.Lstat(s.path(a.ID, stampFile), &stamp); err != nil {
		return Layer{}, 0, err
	}
	d := &copyDiffer{ctx: ctx, dirs: dirs, stamp: stamp.Ctim, sizes: map[fileKey]bool{}}
	if err := d.diffDir(s.path(a.ID, "fs"), old, ""); err != nil {
		return Layer{}, 0, err
	}
	l, err := d.write(w, opts)
	return l, d.size, err
}

// Abort throws a away.
func (s *Copy) Abort(ctx context.Context, a *Active) error {
	if err := checkWorkName(a.ID); err != nil {
		return err
	}
	return s.trash(a.ID)
}

// Apply makes the snapshot parent+layer: a copy of parent's tree with the layer tar r applied,
// verified against diffID.
func (s *Copy) Apply(ctx context.Context, parent string, diffID digest.Digest, r io.Reader) (string, error) {
	chain := ChainID(parent, diffID)
	if s.Has(chain) {
		return chain, nil
	}
	src, err := s.fsOf(parent)
	if err != nil {
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	id, err := s.newWorkDir("apply")
	if err != nil {
		return "", err
	}
	size, err := s.apply(ctx, id, src, diffID, r)
	if err != nil {
		s.trash(id)
		return "", fmt.Errorf("apply layer %s: %w", diffID, err)
	}
	m := meta{Kind: KindCopy, ChainID: chain, Parent: parent, DiffID: diffID, Size: size}
	if err := s.publish(id, m); err != nil {
		return "", err
	}
	return chain, nil
}

func (s *Copy) apply(ctx context.Context, id, src string, diffID digest.Digest, r io.Reader) (int64, error) {
	fs := s.path(id, "fs")
	tc, err := copyTree(ctx, src, fs)
	if err != nil {
		return 0, err
	}
	ap := &applier{ctx: ctx, root: fs, created: map[string]bool{}}
	if err := applyVerified(ap, diffID, r); err != nil {
		return 0, err
	}
	return tc.size + ap.size, syncFS(fs)
}

// View returns the snapshot's own tree; release does nothing.
func (s *Copy) View(ctx context.Context, chainID string) (string, func() error, error) {
	p, err := s.fsOf(chainID)
	if err != nil {
		return "", nil, fmt.Errorf("view snapshot: %w", err)
	}
	return p, func() error { return nil }, nil
}

// Remove moves the committed snapshot chainID to the trash.
func (s *Copy) Remove(ctx context.Context, chainID string) error { return s.remove(chainID) }

// Cleanup deletes what was removed; see the package function Cleanup.
func (s *Copy) Cleanup(ctx context.Context) error { return Cleanup(ctx, s.dir) }
