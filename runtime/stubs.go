package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// stubs records the mount points Run had to create in the root (/proc, /dev, /etc/hosts, ...
// in an image that lacks them) so they can be removed once the step is over: they are the
// sandbox's, not the step's, and must not end up in its layer (BuildKit's "mount stubs cleaner").
// The directories they were made in get their times back, so that a copied-up /etc in an
// overlay upper dir looks exactly like the lower one.
type stubs struct {
	created []string                // in creation order
	parents map[string]*parentTimes // existing dirs a stub was made in
}

type parentTimes struct {
	before, after [2]unix.Timespec // atime, mtime: before the first stub, after the last one
}

// ensure returns where path (absolute, inside root) is found under root with symlinks resolved
// inside root, creating it and any missing parent as a stub: a directory when dir is true,
// else an empty file. An existing path of the wrong type is an error.
func (s *stubs) ensure(root, path string, dir bool) (string, error) {
	p, err := SecureJoin(root, path)
	if err != nil {
		return "", err
	}
	fi, err := os.Lstat(p)
	if err == nil {
		if fi.IsDir() != dir {
			want := "a file"
			if dir {
				want = "a directory"
			}
			return "", fmt.Errorf("mount point %s in the root is not %s", path, want)
		}
		return p, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("mount point %s: %w", path, err)
	}
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("mount point %s: resolves outside the root", path)
	}
	comps := strings.Split(rel, string(filepath.Separator))
	cur := filepath.Clean(root)
	for i, c := range comps {
		parent := cur
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if err == nil {
			if i < len(comps)-1 && !fi.IsDir() {
				return "", fmt.Errorf("mount point %s: %s is not a directory", path, cur)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("mount point %s: %w", path, err)
		}
		if err := s.noteParent(parent); err != nil {
			return "", err
		}
		if i < len(comps)-1 || dir {
			err = os.Mkdir(cur, 0o755)
		} else {
			var f *os.File
			f, err = os.OpenFile(cur, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
			if err == nil {
				err = f.Close()
			}
		}
		if err != nil {
			return "", fmt.Errorf("create mount point %s: %w", path, err)
		}
		s.created = append(s.created, cur)
	}
	return p, nil
}

// noteParent records the times of an existing directory before the first stub is made in it.
func (s *stubs) noteParent(dir string) error {
	if s.parents == nil {
		s.parents = map[string]*parentTimes{}
	}
	if _, ok := s.parents[dir]; ok || s.isStub(dir) {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	s.parents[dir] = &parentTimes{before: [2]unix.Timespec{st.Atim, st.Mtim}}
	return nil
}

// anyLeftIn reports whether a stub made directly in dir still exists.
func (s *stubs) anyLeftIn(dir string) bool {
	for _, c := range s.created {
		if filepath.Dir(c) == dir {
			if _, err := os.Lstat(c); err == nil {
				return true
			}
		}
	}
	return false
}

func (s *stubs) isStub(p string) bool {
	for _, c := range s.created {
		if c == p {
			return true
		}
	}
	return false
}

// sealed records the parents' times once every stub is made: if they are the same when the
// step is over, the step did not touch those directories and their first times are put back.
func (s *stubs) sealed() {
	for dir, t := range s.parents {
		var st unix.Stat_t
		if unix.Lstat(dir, &st) == nil {
			t.after = [2]unix.Timespec{st.Atim, st.Mtim}
		}
	}
}

// remove deletes the stubs that are still empty, newest first, and restores their parents'
// times where the step left those directories alone. It must run once no mount of the sandbox
// is left on them.
func (s *stubs) remove() error {
	untouched := map[string]bool{}
	for dir, t := range s.parents {
		var st unix.Stat_t
		if unix.Lstat(dir, &st) == nil && st.Mtim == t.after[1] {
			untouched[dir] = true
		}
	}
	var errs []error
	for i := len(s.created) - 1; i >= 0; i-- {
		p := s.created[i]
		fi, err := os.Lstat(p)
		if err != nil {
			continue // the step removed it
		}
		switch {
		case fi.IsDir():
			// A directory the step filled is the step's now; ENOTEMPTY keeps it.
			if err := unix.Rmdir(p); err != nil && err != unix.ENOTEMPTY && err != unix.EEXIST && err != unix.ENOENT {
				errs = append(errs, fmt.Errorf("remove mount stub %s: %w", p, err))
			}
		case fi.Mode().IsRegular() && fi.Size() == 0:
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove mount stub %s: %w", p, err))
			}
		}
	}
	for dir := range untouched {
		if s.anyLeftIn(dir) {
			continue // the step kept a stub as its own: the directory did change
		}
		t := s.parents[dir]
		ts := []unix.Timespec{t.before[0], t.before[1]}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, dir, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("restore times of %s: %w", dir, err))
		}
	}
	s.created, s.parents = nil, nil
	return errors.Join(errs...)
}
