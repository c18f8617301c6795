package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"

	"kiln/builder/fileop"
	"kiln/cache"
	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"
)

// cacheMountsDir is where cache mounts live, under the state directory's cache/: one
// directory per cache (named by the hash of its id and base), holding numbered slots (0, 1,
// ...; more than one only for sharing=private) and a lock file per slot.
const cacheMountsDir = "mounts"

// cacheMount is type=cache: a directory kept in the state directory between builds, mounted
// read-write at the target; never part of a layer, and its contents never part of a key.
//
// As in BuildKit, id defaults to the target as written, and a cache that starts from a stage
// or an image (from=, source=) or with its own owner and mode is a different cache than a
// plain one of the same id. sharing=shared lets steps use it at once, locked makes them take
// turns, private gives a step that finds it in use a slot of its own.
func (bd *build) cacheMount(ctx context.Context, st *stageState, m *instructions.Mount, target string) (runMount, error) {
	id := m.CacheID
	if id == "" {
		id = path.Clean(m.Target)
	}
	sharing := string(m.CacheSharing)
	if sharing == "" {
		sharing = string(instructions.MountSharingShared)
	}
	var src mountSource
	base := ""
	if m.From != "" {
		var err error
		if src, err = bd.mountFrom(ctx, st, m); err != nil {
			return runMount{}, err
		}
		if src.local() {
			return runMount{}, fmt.Errorf("cache mount %s: from=%s names a local directory; use a stage or an image", target, m.From)
		}
		base = "from:" + src.chain + ":" + path.Join("/", m.Source)
	}
	if m.UID != nil || m.GID != nil || m.Mode != nil {
		base += fmt.Sprintf(":owner:%d:%d:%o", deref(m.UID, 0), deref(m.GID, 0), deref(m.Mode, 0o755))
	}
	h := sha256.Sum256([]byte(id + "\x00" + base))
	dir := filepath.Join(bd.b.Store.CacheDir(), cacheMountsDir, hex.EncodeToString(h[:]))
	key := mountKey{Type: "cache", Target: target, ID: id, Sharing: sharing, ReadOnly: m.ReadOnly,
		Source: base, Mode: m.Mode, UID: m.UID, GID: m.GID}
	ro := m.ReadOnly
	return runMount{key: key, setup: func(ctx context.Context, s *mountSet) error {
		slot, unlock, err := lockCacheSlot(ctx, dir, sharing)
		if err != nil {
			return fmt.Errorf("cache mount %s: %w", target, err)
		}
		s.onRelease(func() error { unlock(); return nil })
		p := filepath.Join(dir, strconv.Itoa(slot))
		if err := bd.initCacheDir(ctx, p, m, src); err != nil {
			return fmt.Errorf("cache mount %s: %w", target, err)
		}
		s.add(kilnrt.Mount{Type: "bind", Source: p, Target: target, ReadOnly: ro})
		return nil
	}}, nil
}

func deref(p *uint64, def uint64) uint64 {
	if p == nil {
		return def
	}
	return *p
}

// lockCacheSlot takes the lock of the slot of the cache in dir that a step of this sharing
// mode may use, waiting where it must, and returns the slot's number.
func lockCacheSlot(ctx context.Context, dir, sharing string) (int, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, nil, err
	}
	lockPath := func(n int) string { return filepath.Join(dir, strconv.Itoa(n)+".lock") }
	switch sharing {
	case string(instructions.MountSharingShared):
		unlock, err := cache.LockFile(ctx, lockPath(0), false, true)
		return 0, unlock, err
	case string(instructions.MountSharingLocked):
		unlock, err := cache.LockFile(ctx, lockPath(0), true, true)
		return 0, unlock, err
	case string(instructions.MountSharingPrivate):
		for n := 0; ; n++ {
			unlock, err := cache.LockFile(ctx, lockPath(n), true, false)
			if err == nil {
				return n, unlock, nil
			}
			if !errors.Is(err, unix.EWOULDBLOCK) {
				return 0, nil, err
			}
		}
	}
	return 0, nil, fmt.Errorf("unsupported sharing value %q", sharing)
}

// initCacheDir makes the cache directory p on its first use: empty (root's, 0755, unless the
// mount says otherwise) or a copy of its from= source. It is made aside and renamed into place,
// so a crash or a step sharing the cache never sees it half made.
func (bd *build) initCacheDir(ctx context.Context, p string, m *instructions.Mount, src mountSource) error {
	if _, err := os.Lstat(p); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.MkdirTemp(bd.b.Store.TmpDir(), "cache-mount-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	source := path.Join("/", m.Source)
	ownMode := m.UID != nil || m.GID != nil || m.Mode != nil
	// As BuildKit: with from=, the cache starts as the source's files (the whole root without
	// source=), unless it has no source= but an owner or mode of its own: then it starts empty.
	if m.From != "" && (source != "/" || !ownMode) {
		root, release, err := bd.viewSource(ctx, src, false)
		if err != nil {
			return err
		}
		err = seedCacheDir(ctx, tmp, root, source)
		if rerr := release(); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
	} else {
		if err := os.Chmod(tmp, fileop.FromUnixMode(uint32(deref(m.Mode, 0o755)))); err != nil {
			return err
		}
		if err := os.Lchown(tmp, int(deref(m.UID, 0)), int(deref(m.GID, 0))); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, p); err != nil {
		if _, serr := os.Lstat(p); serr == nil {
			return nil // made meanwhile by a step sharing the cache
		}
		return err
	}
	return nil
}

// seedCacheDir copies the directory source of root into dir, owners and modes kept, and gives
// dir the source's own owner and mode.
func seedCacheDir(ctx context.Context, dir, root, source string) error {
	sp, err := fileop.SecureJoin(root, source)
	if err != nil {
		return err
	}
	fi, err := os.Stat(sp)
	if err != nil {
		return fmt.Errorf("source %s: %w", source, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("source %s is not a directory", source)
	}
	err = fileop.Copy(ctx, fileop.Spec{SrcRoot: root, Sources: []string{source}, DestRoot: dir,
		Dest: "/", Workdir: "/", KeepOwners: true, Instruction: "RUN --mount"})
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dir, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return os.Chmod(dir, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
}
