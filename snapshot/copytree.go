package snapshot

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// treeCopier copies a file tree keeping everything a layer can carry: owners, modes, times,
// xattrs, hardlinks, symlinks, devices and fifos.
type treeCopier struct {
	ctx   context.Context
	links map[fileKey]string // source inode -> first destination path
	dirs  map[string]uint64  // relative path -> inode of the copied dir
	size  int64
	times []dirTime
}

type dirTime struct {
	path         string
	mtime, atime int64 // ns
}

// CopyTree copies the tree at src into dst, which must not exist yet.
func CopyTree(ctx context.Context, src, dst string) error {
	_, err := copyTree(ctx, src, dst)
	return err
}

func copyTree(ctx context.Context, src, dst string) (*treeCopier, error) {
	c := &treeCopier{ctx: ctx, links: map[fileKey]string{}, dirs: map[string]uint64{}}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return nil, fmt.Errorf("copy tree %s: %w", src, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("copy tree %s: not a directory", src)
	}
	if err := c.copy(src, dst, "", &st); err != nil {
		return nil, fmt.Errorf("copy tree %s to %s: %w", src, dst, err)
	}
	// Dir times last, deepest first: making entries in a dir changes its mtime.
	for i := len(c.times) - 1; i >= 0; i-- {
		t := c.times[i]
		ts := []unix.Timespec{unix.NsecToTimespec(t.atime), unix.NsecToTimespec(t.mtime)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, t.path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, fmt.Errorf("copy tree: set times of %s: %w", t.path, err)
		}
	}
	return c, nil
}

func (c *treeCopier) copy(src, dst, rel string, st *unix.Stat_t) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	a, err := statAttrs(src, st)
	if err != nil {
		return err
	}
	isLink := false
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		var dst2 unix.Stat_t
		if err := unix.Lstat(dst, &dst2); err != nil {
			return err
		}
		c.dirs[rel] = dst2.Ino
		names, err := readNames(src)
		if err != nil {
			return err
		}
		for _, n := range names {
			var cst unix.Stat_t
			sp := filepath.Join(src, n)
			if err := unix.Lstat(sp, &cst); err != nil {
				return err
			}
			if err := c.copy(sp, filepath.Join(dst, n), joinRel(rel, n), &cst); err != nil {
				return err
			}
		}
		c.times = append(c.times, dirTime{dst, a.mtime.UnixNano(), a.atime.UnixNano()})
		return setAttrs(dst, false, a, true)
	case unix.S_IFREG:
		k := fileKey{uint64(st.Dev), st.Ino}
		if st.Nlink > 1 {
			if first, ok := c.links[k]; ok {
				return os.Link(first, dst)
			}
			c.links[k] = dst
		}
		if err := copyFileData(src, dst); err != nil {
			return err
		}
		c.size += st.Size
	case unix.S_IFLNK:
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(t, dst); err != nil {
			return err
		}
		isLink = true
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", dst, err)
		}
	default:
		return fmt.Errorf("%s: unknown file type %o", src, st.Mode&unix.S_IFMT)
	}
	return setAttrs(dst, isLink, a, false)
}

func joinRel(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// copyFileData copies a regular file's bytes; io.Copy between files uses copy_file_range,
// which shares extents where the file system can.
func copyFileData(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
