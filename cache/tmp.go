package cache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Each process sharing a state directory works in its own ROOT/tmp/<pid>-<random>/ and holds an
// exclusive flock on ROOT/tmp/<pid>-<random>.lock while it lives. The lock, not the pid, tells
// whether the owner is alive: pids are reused, a lock dies with its process.
type procTmp struct {
	dir  string
	lock *os.File
}

const lockSuffix = ".lock"

func newProcTmp(tmpRoot string) (*procTmp, error) {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("make tmp dir: %w", err)
	}
	dir := filepath.Join(tmpRoot, fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(r[:])))
	lf, err := os.OpenFile(dir+lockSuffix, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("make tmp dir: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("make tmp dir: lock %s: %w", lf.Name(), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		lf.Close()
		os.Remove(lf.Name())
		return nil, fmt.Errorf("make tmp dir: %w", err)
	}
	return &procTmp{dir: dir, lock: lf}, nil
}

func (p *procTmp) remove() error {
	err := os.RemoveAll(p.dir)
	os.Remove(p.lock.Name())
	p.lock.Close()
	if err != nil {
		return fmt.Errorf("remove tmp dir: %w", err)
	}
	return nil
}

// cleanTmp removes from tmpRoot what no live process owns: directories whose lock file can be
// locked (the owner is gone), and anything else older than grace (a crash between creating a
// directory and its lock, or stray files).
func cleanTmp(tmpRoot string, grace time.Duration) error {
	entries, err := os.ReadDir(tmpRoot)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if filepath.Ext(name) == lockSuffix {
			continue // handled with its directory below, or by age when orphaned
		}
		p := filepath.Join(tmpRoot, name)
		lockPath := p + lockSuffix
		lf, err := os.OpenFile(lockPath, os.O_RDWR, 0)
		if err == nil {
			if unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
				// Owner gone: remove the directory while holding its lock, then the lock.
				if err := os.RemoveAll(p); err != nil {
					errs = append(errs, err)
				} else {
					os.Remove(lockPath)
				}
			}
			lf.Close()
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if old(e, grace) {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Lock files whose directory is gone and nobody holds.
	for _, e := range entries {
		if filepath.Ext(e.Name()) != lockSuffix {
			continue
		}
		lockPath := filepath.Join(tmpRoot, e.Name())
		if _, err := os.Lstat(lockPath[:len(lockPath)-len(lockSuffix)]); err == nil {
			continue
		}
		lf, err := os.OpenFile(lockPath, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && old(e, grace) {
			os.Remove(lockPath)
		}
		lf.Close()
	}
	return errors.Join(errs...)
}

func old(e os.DirEntry, grace time.Duration) bool {
	info, err := e.Info()
	return err == nil && time.Since(info.ModTime()) > grace
}
