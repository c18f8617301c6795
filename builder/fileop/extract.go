package fileop

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Compression magic numbers, as Docker's archive package detects them.
var (
	magicGzip  = []byte{0x1f, 0x8b, 0x08}
	magicBzip2 = []byte{0x42, 0x5a, 0x68}
	magicXz    = []byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// openArchive opens file p and returns a reader of its decompressed bytes.
// xz goes through the xz program, as Docker's archive package does.
func openArchive(ctx context.Context, p string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(8)
	closeBoth := func(r io.Reader, extra func() error) io.ReadCloser {
		return readCloser{Reader: r, close: func() error {
			var err error
			if extra != nil {
				err = extra()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}}
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, err
		}
		return closeBoth(zr, zr.Close), nil
	case bytes.HasPrefix(head, magicBzip2):
		return closeBoth(bzip2.NewReader(br), nil), nil
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(br)
		if err != nil {
			f.Close()
			return nil, err
		}
		return closeBoth(zr, func() error { zr.Close(); return nil }), nil
	case bytes.HasPrefix(head, magicXz):
		cmd := exec.CommandContext(ctx, "xz", "-d", "-c", "-q")
		cmd.Stdin = br
		out, err := cmd.StdoutPipe()
		if err != nil {
			f.Close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.Close()
			return nil, fmt.Errorf("decompress xz: %w", err)
		}
		return closeBoth(out, func() error {
			out.Close()
			_ = cmd.Wait() // an early close makes xz fail with EPIPE; not an error here
			return nil
		}), nil
	}
	return closeBoth(br, nil), nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// isArchive tells whether the regular file p is a tar archive, possibly
// compressed: it must decompress and yield a first tar header (BuildKit's
// test). Only a missing decompressor is an error.
func isArchive(ctx context.Context, p string) (bool, error) {
	r, err := openArchive(ctx, p)
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return false, err
		}
		return false, nil
	}
	defer r.Close()
	_, err = tar.NewReader(r).Next()
	return err == nil, nil
}

// extract unpacks src into dest when src is an archive; ok=false means it is
// not one and must be copied instead. As BuildKit (which unpacks chrooted at
// the destination directory), entry names and links resolve inside that
// directory: "../" and absolute names stay in it, and so do writes through
// symlinks. Entries keep the archive's owners unless Chown is set; Chmod
// does not apply; implied parent directories are 0755 and 0:0.
func (c *copier) extract(ctx context.Context, src source, dest string) (bool, error) {
	ok, err := isArchive(ctx, src.abs)
	if err != nil || !ok {
		return false, err
	}
	destAbs, err := SecureJoin(c.s.DestRoot, dest)
	if err != nil {
		return false, err
	}
	if err := c.mkdirAllMode(destAbs, 0o755); err != nil {
		return false, err
	}
	r, err := openArchive(ctx, src.abs)
	if err != nil {
		return false, err
	}
	defer r.Close()
	return true, c.untar(ctx, tar.NewReader(r), destAbs)
}

func (c *copier) untar(ctx context.Context, tr *tar.Reader, root string) error {
	type dirTimes struct {
		path         string
		atime, mtime time.Time
	}
	var dirs []dirTimes
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := path.Clean("/" + filepath.ToSlash(hdr.Name))
		if name == "/" {
			continue // the destination itself keeps its metadata
		}
		parent, err := SecureJoin(root, path.Dir(name))
		if err != nil {
			return err
		}
		if _, err := os.Lstat(parent); err != nil {
			// Implied directories: 0755, owned by root, as Docker's archive does.
			if err := mkdirAllOwned(parent, root, 0o755, 0, 0); err != nil {
				return fmt.Errorf("create parent of %s: %w", name, err)
			}
		}
		target := filepath.Join(parent, path.Base(name))
		if fi, err := os.Lstat(target); err == nil {
			if !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
				if err := os.RemoveAll(target); err != nil {
					return err
				}
			}
		}
		if err := c.createEntry(hdr, tr, root, target); err != nil {
			return fmt.Errorf("extract %s: %w", name, err)
		}
		atime, mtime := boundTime(latest(hdr.AccessTime, hdr.ModTime)), boundTime(hdr.ModTime)
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTimes{target, atime, mtime})
			continue
		}
		if err := lutimes(target, atime, mtime); err != nil {
			return err
		}
	}
	// Directory times last: creating entries inside changes them.
	for _, d := range dirs {
		if err := lutimes(d.path, d.atime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) createEntry(hdr *tar.Header, r io.Reader, root, target string) error {
	mode := hdr.FileInfo().Mode()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := os.Lstat(target); err != nil || !fi.IsDir() {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		}
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(writerOnly{f}, r, c.buf); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	case tar.TypeLink:
		// Resolved inside root like the target: a chroot would do the same.
		old, err := secureJoinParent(root, path.Clean("/"+hdr.Linkname))
		if err != nil {
			return err
		}
		if err := os.Link(old, target); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		m := uint32(mode.Perm())
		switch hdr.Typeflag {
		case tar.TypeChar:
			m |= unix.S_IFCHR
		case tar.TypeBlock:
			m |= unix.S_IFBLK
		default:
			m |= unix.S_IFIFO
		}
		if err := unix.Mknod(target, m, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unhandled tar header type %d", hdr.Typeflag)
	}
	uid, gid := hdr.Uid, hdr.Gid
	if c.s.Chown != nil {
		uid, gid = c.s.Chown.UID, c.s.Chown.GID
	}
	if err := os.Lchown(target, uid, gid); err != nil {
		return fmt.Errorf("lchown %d:%d: %w", uid, gid, err)
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			_ = unix.Lsetxattr(target, x, []byte(v), 0) // best effort, as BuildKit
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := os.Chmod(target, mode&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			return err
		}
	}
	return nil
}

type writerOnly struct{ io.Writer }

func latest(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// boundTime keeps times the kernel can store, as Docker's archive does.
func boundTime(t time.Time) time.Time {
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(1<<33-1, 0)) {
		return time.Unix(0, 0)
	}
	return t
}

func lutimes(p string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
}

// MkdirAll creates dir (a path inside the image root, symlinks resolved within root) and its
// missing parents with perm and the given owner, as WORKDIR and COPY create directories.
func MkdirAll(root, dir string, perm os.FileMode, uid, gid int) error {
	p, err := SecureJoin(root, dir)
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if err := mkdirAllOwned(p, root, perm, uid, gid); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	return nil
}

// mkdirAllOwned creates dir and its missing parents below root with perm and
// the given owner. dir must already be resolved inside root.
func mkdirAllOwned(dir, root string, perm os.FileMode, uid, gid int) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if fi.IsDir() {
			return nil
		}
		return &os.PathError{Op: "mkdir", Path: dir, Err: unix.ENOTDIR}
	}
	if p := filepath.Dir(dir); p != dir && len(p) >= len(filepath.Clean(root)) {
		if err := mkdirAllOwned(p, root, perm, uid, gid); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil {
		if fi, err2 := os.Lstat(dir); err2 == nil && fi.IsDir() {
			return nil
		}
		return err
	}
	if err := os.Chmod(dir, perm); err != nil { // umask
		return err
	}
	return os.Lchown(dir, uid, gid)
}
