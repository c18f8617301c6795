package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Errors a caller must tell apart.
var (
	// ErrNotFound: the committed snapshot asked for does not exist.
	ErrNotFound = errors.New("snapshot not found")
	// ErrHasChildren: an overlay snapshot cannot be removed while committed snapshots stack on it.
	ErrHasChildren = errors.New("snapshot has children")
)

// Kinds of snapshotter.
const (
	KindOverlay = "overlay"
	KindCopy    = "copy"
	KindAuto    = "auto"
)

// meta is a snapshot's meta.json.
type meta struct {
	Kind      string        `json:"kind"`
	ChainID   string        `json:"chainID"`
	Parent    string        `json:"parent,omitempty"`
	DiffID    digest.Digest `json:"diffID"`
	Size      int64         `json:"size"`
	Whiteouts bool          `json:"whiteouts,omitempty"` // overlay: fs holds whiteouts or opaque dirs
}

// store is the directory layout both snapshotters share:
//
//	dir/<chain-hex>/{fs,meta.json}   committed snapshots, named by their chain ID's hex
//	dir/active-<rand>/{fs,work,merged,...}  snapshots being written
//	dir/apply-<rand>/, dir/view-<rand>/     work in progress
//	dir/trash-<rand>/                        removed, deleted later by Cleanup
//	dir/empty/                               an always-empty dir (overlay's lower for scratch)
type store struct {
	dir  string
	kind string
	// locks holds the flock'd lock file of each work dir this process owns: Cleanup in any
	// process takes a work dir whose lock it can get as left by a crash.
	locks *sync.Map // name -> *os.File
}

func newStore(dir, kind string) (store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return store{}, fmt.Errorf("snapshot dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, "empty"), 0o755); err != nil {
		return store{}, fmt.Errorf("snapshot dir %s: %w", dir, err)
	}
	return store{dir: abs, kind: kind, locks: &sync.Map{}}, nil
}

// New opens the snapshots kept under dir. kind is "overlay" (the default when ""), "copy", or
// "auto" (overlay when an overlay mount works in dir, else copy).
func New(dir string, kind string) (Snapshotter, error) {
	switch kind {
	case "", KindOverlay:
		return NewOverlay(dir)
	case KindCopy:
		return NewCopy(dir)
	case KindAuto:
		st, err := newStore(dir, KindOverlay)
		if err != nil {
			return nil, err
		}
		if err := probeOverlay(st.dir); err != nil {
			return NewCopy(dir)
		}
		return NewOverlay(dir)
	default:
		return nil, fmt.Errorf("snapshotter kind %q: want overlay, copy or auto", kind)
	}
}

// chainDir returns the directory name of a committed snapshot.
func chainName(chainID string) (string, error) {
	d, err := digest.Parse(chainID)
	if err != nil {
		return "", fmt.Errorf("chain ID %q: %w", chainID, err)
	}
	return d.Encoded(), nil
}

func (s store) path(name string, elem ...string) string {
	return filepath.Join(append([]string{s.dir, name}, elem...)...)
}

func (s store) chainPath(chainID string, elem ...string) (string, error) {
	n, err := chainName(chainID)
	if err != nil {
		return "", err
	}
	return s.path(n, elem...), nil
}

// newWorkDir makes dir/<prefix>-<random> and returns its name.
func (s store) newWorkDir(prefix string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	name := prefix + "-" + hex.EncodeToString(b[:])
	if err := os.Mkdir(s.path(name), 0o700); err != nil {
		return "", fmt.Errorf("make snapshot work dir: %w", err)
	}
	if prefix == "trash" {
		return name, nil
	}
	f, err := os.OpenFile(s.path(name, lockFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(s.path(name))
		return "", fmt.Errorf("lock snapshot work dir: %w", err)
	}
	s.locks.Store(name, f)
	return name, nil
}

const lockFile = "lock"

// unlock lets go of the lock of the work dir name, once it is published, trashed or deleted.
func (s store) unlock(name string) {
	if f, ok := s.locks.LoadAndDelete(name); ok {
		f.(*os.File).Close()
	}
}

// discard deletes the small work dir name at once.
func (s store) discard(name string) error {
	defer s.unlock(name)
	return os.RemoveAll(s.path(name))
}

func checkWorkName(id string) error {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("bad snapshot id %q", id)
	}
	return nil
}

// Has reports whether the committed snapshot chainID exists.
func (s store) Has(chainID string) bool {
	if chainID == "" {
		return true
	}
	p, err := s.chainPath(chainID, "meta.json")
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

func (s store) readMeta(chainID string) (meta, error) {
	var m meta
	p, err := s.chainPath(chainID, "meta.json")
	if err != nil {
		return m, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return m, fmt.Errorf("snapshot %s: %w", chainID, ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("read snapshot %s: %w", chainID, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("read snapshot %s meta: %w", chainID, err)
	}
	return m, nil
}

// WriteFileAtomic writes data to path via a temporary file in the same directory, synced, then
// renamed into place, so readers see the old content or the new, never a part.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// publish turns the work dir name (holding fs/ and whatever else) into the committed snapshot m:
// meta.json is written into it, then the whole dir is renamed to the chain's name without
// replacing. When another process won the race, ours goes to the trash and theirs stays.
func (s store) publish(name string, m meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(s.path(name, "meta.json"), b, 0o644); err != nil {
		return fmt.Errorf("write snapshot %s meta: %w", m.ChainID, err)
	}
	target, err := s.chainPath(m.ChainID)
	if err != nil {
		return err
	}
	if err := os.Remove(s.path(name, lockFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("publish snapshot %s: %w", m.ChainID, err)
	}
	err = unix.Renameat2(unix.AT_FDCWD, s.path(name), unix.AT_FDCWD, target, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		if s.Has(m.ChainID) {
			return s.trash(name)
		}
		// A stray dir without meta.json (a crash between mkdir and rename cannot make one, but
		// be safe): move it away and retry once.
		if err := s.trash(filepath.Base(target)); err != nil {
			return err
		}
		err = unix.Renameat2(unix.AT_FDCWD, s.path(name), unix.AT_FDCWD, target, unix.RENAME_NOREPLACE)
	}
	if err != nil {
		return fmt.Errorf("publish snapshot %s: %w", m.ChainID, err)
	}
	s.unlock(name)
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// trash moves dir/name out of the way; Cleanup deletes it later.
func (s store) trash(name string) error {
	t, err := s.newWorkDir("trash")
	if err != nil {
		return err
	}
	if err := os.Rename(s.path(name), s.path(t, "x")); err != nil {
		os.Remove(s.path(t))
		return fmt.Errorf("remove snapshot %s: %w", name, err)
	}
	s.unlock(name)
	return nil
}

// List returns the committed snapshots.
func (s store) List(ctx context.Context) ([]Info, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []Info
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !isHex64(e.Name()) {
			continue
		}
		m, err := s.readMeta("sha256:" + e.Name())
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Info{ChainID: m.ChainID, Parent: m.Parent, Size: m.Size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ChainID < out[j].ChainID })
	return out, nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// remove moves a committed snapshot to the trash.
func (s store) remove(chainID string) error {
	n, err := chainName(chainID)
	if err != nil {
		return err
	}
	if !s.Has(chainID) {
		return fmt.Errorf("remove snapshot %s: %w", chainID, ErrNotFound)
	}
	return s.trash(n)
}

// Cleanup deletes what Remove, Abort and lost races left in the trash, and the work dirs
// (active, apply, view) of processes that died without cleaning up (their mounts included).
// Call it when no build is running in this process: deleting big trees slows down file
// creation for a while.
func Cleanup(ctx context.Context, dir string) error {
	return sweep(ctx, dir, true)
}

// Recover unmounts the work directories (active, apply, view) whose kiln process is gone, as
// after a kill -9, and moves them to the trash: cheap, so it runs when kiln starts; deleting
// the trash is left to Cleanup, after the build.
func Recover(ctx context.Context, dir string) error {
	return sweep(ctx, dir, false)
}

// sweep is Cleanup (remove) and Recover (only unmount and trash orphans).
func sweep(ctx context.Context, dir string, remove bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean up snapshots: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, "trash-"):
			if !remove {
				continue
			}
		case strings.HasPrefix(name, "active-"), strings.HasPrefix(name, "apply-"), strings.HasPrefix(name, "view-"):
			if !orphaned(p) {
				continue
			}
		default:
			continue
		}
		// A trashed or orphaned active snapshot may still hold a mount left by a crash.
		unmountAll(p)
		if !remove {
			if err := os.Rename(p, filepath.Join(dir, "trash-"+name)); err != nil {
				errs = append(errs, fmt.Errorf("recover %s: %w", p, err))
			}
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("clean up %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// orphaned reports whether the work dir p was left by a process that died: nobody holds its lock.
func orphaned(p string) bool {
	f, err := os.OpenFile(filepath.Join(p, lockFile), os.O_RDWR, 0)
	if err != nil {
		return false // being made or being published
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}
