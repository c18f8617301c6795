package fileop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Owner is a numeric user and group, resolved by the caller.
type Owner struct{ UID, GID int }

// Spec describes one COPY or ADD from a source tree into an image root.
type Spec struct {
	// SrcRoot is the build context directory or a stage's root file system;
	// it is only read.
	SrcRoot string
	// Sources as written in the Dockerfile after variable expansion. They are
	// relative to SrcRoot and never leave it ("../" stops at SrcRoot). They
	// may hold filepath.Match wildcards.
	Sources []string
	// Ignore is the context's .dockerignore (nil for stages and images).
	Ignore *Ignore
	// DestRoot is the image root being written.
	DestRoot string
	// Dest as written, expanded: relative to Workdir unless absolute; a
	// trailing "/" (or "/.") means a directory.
	Dest    string
	Workdir string
	// Chown owns everything copied (and every directory created) by this
	// owner. Nil: 0:0, or the source's owners when KeepOwners is set.
	Chown *Owner
	// KeepOwners keeps the source's owners when Chown is nil. BuildKit does
	// so for COPY --from a stage or image; the build context is always
	// copied as 0:0 (its owners are reset when it is sent).
	KeepOwners bool
	// Chmod, when set, replaces the mode of every file and directory copied
	// (Go's ModeSetuid/ModeSetgid/ModeSticky or the raw octal 04000/02000/
	// 01000 bits both work). Nil keeps the source modes.
	Chmod *os.FileMode
	// ChmodSet, when set, is a symbolic --chmod (u+x, g=rx, ...) applied to
	// the mode of every file and directory copied; directories created on
	// the way to Dest stay 0755. It wins over Chmod.
	ChmodSet *ModeSet
	// Exclude holds --exclude patterns (.dockerignore syntax), matched
	// against paths relative to each source directory: a source named
	// itself is never excluded, what is below it may be.
	Exclude []string
	// Parents is COPY --parents: each source is split at "/./" (or taken
	// whole, from the root) and what matches the part after it is copied
	// with its path kept, below Dest. A source without wildcards must exist.
	Parents bool
	// Extract: a local source that is a tar archive (plain, gzip, bzip2, xz
	// or zstd, detected by content) is unpacked into Dest instead (ADD).
	Extract bool
	// Instruction is "COPY" or "ADD", for error messages.
	Instruction string

	exclude *Ignore // Exclude, compiled by resolveSources
}

func (s *Spec) instruction() string {
	if s.Instruction == "" {
		return "COPY"
	}
	return s.Instruction
}

// destPath is Dest made absolute against Workdir, cleaned; dir tells whether
// it was written as a directory ("dir/", "dir/.", ".").
func (s *Spec) destPath() (p string, dir bool) {
	d := filepath.ToSlash(s.Dest)
	if d == "" || d == "." {
		d = "./"
	}
	dir = strings.HasSuffix(d, "/") || strings.HasSuffix(d, "/.")
	if !path.IsAbs(d) {
		wd := filepath.ToSlash(s.Workdir)
		if wd == "" {
			wd = "/"
		}
		d = path.Join("/", wd, d)
	}
	return path.Clean("/" + d), dir
}

// copyBufSize is the user-space copy buffer when copy_file_range can't be
// used (Go's os.File.ReadFrom tries it first).
const copyBufSize = 256 << 10

// Copy performs a COPY (or ADD) as BuildKit does: each source (a wildcard
// gives one per match) is copied in turn; a directory's contents are copied,
// not the directory itself; a file goes into Dest when Dest is (or is written
// as) a directory and becomes Dest otherwise. Dest is resolved inside
// DestRoot as if DestRoot were "/" and missing parents are created 0755 (or
// with Chmod's permission bits), owned by Chown or 0:0.
func Copy(ctx context.Context, s Spec) error {
	srcs, err := resolveSources(ctx, &s)
	if err != nil {
		return err
	}
	dest, destIsDir := s.destPath()
	if len(srcs) > 1 && !destIsDir && !s.Parents {
		p, err := SecureJoin(s.DestRoot, dest)
		if err != nil {
			return fmt.Errorf("%s failed: %w", s.instruction(), err)
		}
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s failed: %w", s.instruction(), notDirError(s.instruction()))
		}
	}
	c := &copier{s: &s, buf: make([]byte, copyBufSize), xbuf: make([]byte, 4096)}
	for _, src := range srcs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.Extract && src.fi.Mode().IsRegular() {
			ok, err := c.extract(ctx, src, dest)
			if err != nil {
				return fmt.Errorf("%s failed: extract %s to %s: %w", s.instruction(), "/"+src.rel, dest, err)
			}
			if ok {
				continue
			}
		}
		if err := c.copySource(ctx, src, dest, destIsDir); err != nil {
			return fmt.Errorf("%s failed: copy %s to %s: %w", s.instruction(), "/"+src.rel, dest, err)
		}
	}
	return nil
}

// notDirError keeps Docker's wording, naming the instruction actually used.
func notDirError(instr string) error {
	if instr == "COPY" {
		return ErrNotDirectory
	}
	return fmt.Errorf("%w (%s)", ErrNotDirectory, instr)
}

type copier struct {
	s      *Spec
	buf    []byte
	xbuf   []byte
	inodes map[fileID]string // hardlinked source inode -> first copy, per source
}

type fileID struct{ dev, ino uint64 }

// copySource copies one resolved source to dest (absolute in the image).
func (c *copier) copySource(ctx context.Context, src source, dest string, destIsDir bool) error {
	// Parents of the destination first ("dir/" names the directory itself).
	ensure := path.Dir(dest)
	if destIsDir {
		ensure = dest
	}
	ensureAbs, err := SecureJoin(c.s.DestRoot, ensure)
	if err != nil {
		return err
	}
	if err := c.mkdirAll(ensureAbs); err != nil {
		return err
	}
	target, err := SecureJoin(c.s.DestRoot, dest)
	if err != nil {
		return err
	}
	srcIsDir := src.fi.IsDir()
	tfi, err := os.Stat(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotDir(err) {
		return fmt.Errorf("stat destination: %w", err)
	}
	exists := err == nil
	if !srcIsDir && exists && tfi.IsDir() {
		target = filepath.Join(target, src.name)
	}
	parent := filepath.Dir(target)
	if srcIsDir && !exists {
		parent = target
	}
	if err := c.mkdirAll(parent); err != nil {
		return err
	}
	c.inodes = nil

	top := &entry{abs: src.abs, rel: "", fi: src.fi}
	if !srcIsDir {
		return c.copyEntry(top, target)
	}
	// The top directory merges into target, whose own mode and owner stay
	// (it was just created 0755, or it existed); only its times follow the
	// source, after its contents are written (fsutil does the same).
	if lfi, err := os.Lstat(target); err != nil {
		return err
	} else if !lfi.IsDir() {
		return fmt.Errorf("cannot copy to non-directory: %s", relTo(c.s.DestRoot, target))
	}
	_, st, err := c.s.Ignore.stateOf(src.rel)
	if err != nil {
		return err
	}
	w := walker{
		ctx: ctx, ig: c.s.Ignore, ex: c.s.exclude, inc: src.inc,
		visit: func(e *entry) error { return c.copyEntry(e, target+"/"+e.rel) },
		post:  func(e *entry) error { return c.finishDir(e, target+"/"+e.rel) },
	}
	if err := w.walkDir(src.abs, src.rel, "", walkState{ig: st}); err != nil {
		return err
	}
	return setTimes(target, src.fi)
}

// copyEntry creates target as a copy of e. Directories get their metadata
// in finishDir, after their contents.
func (c *copier) copyEntry(e *entry, target string) error {
	fi := e.fi
	tfi, err := os.Lstat(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", e.rel, err)
	}
	exists := err == nil
	if fi.IsDir() {
		if !exists {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		} else if !tfi.IsDir() {
			// A merge never replaces a non-directory with a directory (fsutil).
			return fmt.Errorf("cannot copy to non-directory: %s", relTo(c.s.DestRoot, target))
		}
		return nil
	}
	if exists {
		if tfi.IsDir() {
			return fmt.Errorf("cannot replace directory %s with file", relTo(c.s.DestRoot, target))
		}
		if err := os.Remove(target); err != nil {
			return err
		}
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		if linked, err := c.linkIfSeen(fi, target); err != nil || linked {
			return err
		}
		if err := c.copyFile(e.abs, target); err != nil {
			return err
		}
	case m&os.ModeSymlink != 0:
		link, err := os.Readlink(e.abs)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, target); err != nil {
			return err
		}
	case m&(os.ModeDevice|os.ModeNamedPipe|os.ModeSocket) != 0:
		st := fi.Sys().(*syscall.Stat_t)
		if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("create device %s: %w", e.rel, err)
		}
	default:
		return fmt.Errorf("unsupported file type %v: %s", m.Type(), e.rel)
	}
	return c.setInfo(e, target)
}

// finishDir applies a copied directory's owner, mode, times and xattrs.
func (c *copier) finishDir(e *entry, target string) error {
	return c.setInfo(e, target)
}

// linkIfSeen hardlinks target to an earlier copy of the same source inode:
// fsutil keeps hardlinks within one source, so do we.
func (c *copier) linkIfSeen(fi os.FileInfo, target string) (bool, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink < 2 {
		return false, nil
	}
	id := fileID{dev: uint64(st.Dev), ino: st.Ino}
	if first, ok := c.inodes[id]; ok {
		return true, os.Link(first, target)
	}
	if c.inodes == nil {
		c.inodes = map[fileID]string{}
	}
	c.inodes[id] = target
	return false, nil
}

// readerOnly hides os.File's WriterTo so io.CopyBuffer uses our buffer.
type readerOnly struct{ io.Reader }

func (c *copier) copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// ReadFrom uses copy_file_range (in-kernel, reflink where possible) and
	// falls back to a plain read/write loop.
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// setInfo gives target its owner, mode, times and xattrs from the source
// entry, in the order that keeps each: chown (clears set-id bits and file
// capabilities) before chmod and before xattrs.
func (c *copier) setInfo(e *entry, target string) error {
	fi := e.fi
	uid, gid := c.owner(fi)
	if err := os.Lchown(target, uid, gid); err != nil {
		return err
	}
	isLink := fi.Mode()&os.ModeSymlink != 0
	if !isLink {
		if err := os.Chmod(target, c.mode(fi.Mode())); err != nil {
			return err
		}
	}
	copyXattrs(e.abs, target, c.xbuf)
	return setTimes(target, fi)
}

// owner is Chown, else the source's owner for --from copies, else 0:0.
func (c *copier) owner(fi os.FileInfo) (int, int) {
	if c.s.Chown != nil {
		return c.s.Chown.UID, c.s.Chown.GID
	}
	if c.s.KeepOwners {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return int(st.Uid), int(st.Gid)
		}
	}
	return 0, 0
}

// mode is what chmod gets for a copied object: Chmod when given (with its
// set-id and sticky bits), else the source mode.
func (c *copier) mode(m os.FileMode) os.FileMode {
	if c.s.ChmodSet != nil {
		return c.s.ChmodSet.Apply(m) & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
	}
	if c.s.Chmod == nil {
		return m & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
	}
	return chmodBits(*c.s.Chmod)
}

// chmodBits accepts both Go's special mode bits and raw octal ones.
func chmodBits(m os.FileMode) os.FileMode {
	return m&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) | FromUnixMode(uint32(m)&0o7000)
}

// mkdirAll creates dir and its missing parents (dir is already resolved
// inside DestRoot) with mode 0755, or Chmod's permission bits as fsutil uses
// them, owned by Chown or 0:0.
func (c *copier) mkdirAll(dir string) error {
	perm := os.FileMode(0o755)
	if c.s.Chmod != nil && c.s.ChmodSet == nil {
		perm = *c.s.Chmod & os.ModePerm
	}
	return c.mkdirAllMode(dir, perm)
}

func (c *copier) mkdirAllMode(dir string, perm os.FileMode) error {
	uid, gid := 0, 0
	if c.s.Chown != nil {
		uid, gid = c.s.Chown.UID, c.s.Chown.GID
	}
	if err := mkdirAllOwned(dir, c.s.DestRoot, perm, uid, gid); err != nil {
		return fmt.Errorf("create directory %s: %w", "/"+relTo(c.s.DestRoot, dir), err)
	}
	return nil
}

// setTimes copies atime and mtime from fi to target without following a
// symlink.
func setTimes(target string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	ts := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: target, Err: err}
	}
	return nil
}
