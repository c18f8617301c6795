package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Lock takes the state directory's lock, ROOT/lock: builds take it shared, prune takes it
// exclusive. It waits until the lock is free or ctx is done. Each call opens its own file, so
// two locks taken in one process conflict as they would between processes.
func (s *Store) Lock(ctx context.Context, exclusive bool) (unlock func(), err error) {
	unlockFile, err := LockFile(ctx, filepath.Join(s.root, "lock"), exclusive, true)
	if err != nil {
		return nil, err
	}
	if !exclusive {
		return unlockFile, nil
	}
	s.mu.Lock()
	s.exclusive++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.exclusive--
		s.mu.Unlock()
		unlockFile()
	}, nil
}

func (s *Store) holdsExclusive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exclusive > 0
}

// LockFile locks path (creating it), shared or exclusive; closing is unlocking. With wait it
// polls until the lock is free or ctx ends (a blocking flock cannot be interrupted); without,
// a lock held by another fails at once with an error that wraps unix.EWOULDBLOCK. Locks of the
// state directory and of cache mounts are taken this way.
func LockFile(ctx context.Context, path string, exclusive, wait bool) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || !wait {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}
