package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// staleGrace spares cgroups made this recently: another kiln starting at the same moment may
// have made one and not yet put its sandbox in it.
const staleGrace = 30 * time.Second

// cgroupHierarchies lists every hierarchy kiln may make step cgroups in.
func cgroupHierarchies() []string {
	var hs []string
	if d := cgroup2Mount(); d != "" {
		hs = append(hs, d)
	}
	for _, c := range []string{"pids", "memory", "cpu"} {
		h := filepath.Join("/sys/fs/cgroup", c)
		var st unix.Statfs_t
		if unix.Statfs(h, &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC {
			hs = append(hs, h)
		}
	}
	return hs
}

// CleanupStale removes the step cgroups a kiln killed with SIGKILL left behind: those under the
// kiln parent with no process left in them (the kernel killed the sandbox with kiln, through
// the init's parent-death signal). Cgroups with processes belong to a running kiln and are left
// alone, as are ones younger than a few seconds. Mounts need no clean-up: they lived in the
// sandbox's own mount namespace and died with it. Call it when kiln starts; it costs a few
// directory reads.
func CleanupStale(ctx context.Context) error { return cleanupStale(ctx, staleGrace) }

// cleanupStale is CleanupStale sparing cgroups younger than grace.
func cleanupStale(ctx context.Context, grace time.Duration) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		parent := filepath.Join(h, cgroupParent)
		ents, err := os.ReadDir(parent)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("clean up stale cgroups: %w", err))
			continue
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !e.IsDir() || checkCgroupName(e.Name()) != nil {
				continue
			}
			if err := removeIfStale(filepath.Join(parent, e.Name()), grace); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeIfStale removes the cgroup dir when it is old enough and has no process.
func removeIfStale(dir string, grace time.Duration) error {
	fi, err := os.Stat(dir)
	if err != nil || time.Since(fi.ModTime()) < grace {
		return nil
	}
	pids, err := readPids(dir)
	if err != nil || len(pids) > 0 {
		return nil
	}
	// EBUSY: a process or a child cgroup appeared meanwhile; ENOENT: someone else removed it.
	if err := unix.Rmdir(dir); err != nil && err != unix.EBUSY && err != unix.ENOENT {
		return fmt.Errorf("remove stale cgroup %s: %w", dir, err)
	}
	return nil
}
