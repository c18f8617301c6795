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
	unlockFile, err := flockFile(ctx, filepath.Join(s.root, "lock"), exclusive)
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

// flockFile locks path (creating it), polling so that ctx can end the wait: a blocking flock
// cannot be interrupted.
func flockFile(ctx context.Context, path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(wait):
		}
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
	return func() { f.Close() }, nil // closing the file releases the flock
}
