package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnsafePath: a layer entry names a path outside the directory it is applied to.
var ErrUnsafePath = errors.New("path escapes the layer root")

// ApplyTar applies the uncompressed layer tar read from r onto dir, a plain directory holding a
// full tree: a whiteout deletes the named file, an opaque marker deletes what the dir held before
// this layer. Entry paths are resolved inside dir (symlinks followed as if dir were /); a path
// with ".." leaving dir is refused.
func ApplyTar(ctx context.Context, dir string, r io.Reader) error {
	a := &applier{ctx: ctx, root: dir, created: map[string]bool{}}
	return a.apply(r)
}

// applier unpacks one layer tar into root.
type applier struct {
	ctx  context.Context
	root string
	// overlay: write whiteouts as 0/0 char devices and opaque dirs as xattrs (root is an
	// overlay upper dir) instead of deleting.
	overlay bool
	// lowers: overlay parents' fs dirs, topmost first: where the attributes of dirs the tar
	// leaves implicit are taken from.
	lowers  []string
	created map[string]bool // real paths made by this layer
	times   []dirTime
	size    int64
	wh      bool // a whiteout or opaque marker was applied
}

func (a *applier) apply(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("apply layer: read tar: %w", err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return fmt.Errorf("apply layer: %s: %w", hdr.Name, err)
		}
	}
	for i := len(a.times) - 1; i >= 0; i-- {
		t := a.times[i]
		ts := []unix.Timespec{unix.NsecToTimespec(t.atime), unix.NsecToTimespec(t.mtime)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, t.path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("apply layer: set times of %s: %w", t.path, err)
		}
	}
	return nil
}

// cleanName turns a tar entry name into a clean relative path; "" is the root.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafePath)
	}
	name = strings.TrimLeft(name, "/")
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, name)
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

func (a *applier) entry(hdr *tar.Header, tr io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader:
		return nil
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		return nil // the root itself keeps its attributes
	}
	dirRel, base := path.Split(rel)
	parent, err := a.resolveDir(dirRel, true)
	if err != nil {
		return err
	}
	if base == opaqueMarker {
		return a.opaque(parent)
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(parent, strings.TrimPrefix(base, whiteoutPrefix))
	}
	p := filepath.Join(parent, base)

	var old unix.Stat_t
	oldErr := unix.Lstat(p, &old)
	overWhiteout := false
	if oldErr == nil {
		if hdr.Typeflag == tar.TypeDir && old.Mode&unix.S_IFMT == unix.S_IFDIR {
			// Merge: keep the dir, take the entry's attributes.
		} else {
			overWhiteout = isWhiteout(&old)
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			oldErr = unix.ENOENT
		}
	}

	at := attrs{
		mode:  uint32(hdr.Mode) & 0o7777,
		uid:   hdr.Uid,
		gid:   hdr.Gid,
		mtime: hdr.ModTime,
		atime: hdr.AccessTime,
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, paxXattrPrefix); ok {
			if strings.HasPrefix(x, overlayXattrPrefix) {
				continue // a layer never sets overlay's own attributes
			}
			if at.xattrs == nil {
				at.xattrs = map[string]string{}
			}
			at.xattrs[x] = v
		}
	}

	isLink := false
	switch hdr.Typeflag {
	case tar.TypeDir:
		if oldErr != nil {
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			if overWhiteout && a.overlay {
				// The whiteout hid a lower entry; the new dir must hide its lower contents too.
				if err := unix.Lsetxattr(p, opaqueXattr, []byte("y"), 0); err != nil {
					return fmt.Errorf("mark %s opaque: %w", p, err)
				}
			}
		}
		a.created[p] = true
		a.times = append(a.times, dirTime{p, at.mtime.UnixNano(), timeOr(at.atime, at.mtime).UnixNano()})
		return setAttrs(p, false, at, true)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		a.size += n
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, p); err != nil {
			return err
		}
		isLink = true
	case tar.TypeLink:
		target, err := a.resolveLinkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		if err := os.Link(target, p); err != nil {
			return err
		}
		a.created[p] = true
		return nil // the inode's attributes came with its first entry
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(p, mode|0o600, int(dev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	a.created[p] = true
	return setAttrs(p, isLink, at, false)
}

func timeOr(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

// opaque applies an opaque marker to the dir parent.
func (a *applier) opaque(parent string) error {
	a.wh = true
	if a.overlay {
		if err := unix.Lsetxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %s opaque: %w", parent, err)
		}
		return nil
	}
	names, err := readNames(parent)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(parent, n)
		if a.created[p] {
			continue // made by this layer, which the marker does not hide
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// whiteout applies the whiteout of name in the dir parent.
func (a *applier) whiteout(parent, name string) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("%w: whiteout of %q", ErrUnsafePath, name)
	}
	a.wh = true
	p := filepath.Join(parent, name)
	if a.created[p] {
		// A whiteout hides only what lower layers hold; an entry of this same layer stays.
		if a.overlay {
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				return unix.Lsetxattr(p, opaqueXattr, []byte("y"), 0)
			}
		}
		return nil
	}
	if !a.overlay {
		return os.RemoveAll(p)
	}
	if err := os.RemoveAll(p); err != nil {
		return err
	}
	if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("make whiteout %s: %w", p, err)
	}
	return nil
}

// resolveDir returns the real path of the dir rel inside root, following symlinks as if root were
// "/" so no path leaves root. Missing dirs are made when mk is set.
func (a *applier) resolveDir(rel string, mk bool) (string, error) {
	comps := splitPath(rel)
	var cur []string
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		next := append(cur[:len(cur):len(cur)], c)
		p := filepath.Join(a.root, filepath.Join(next...))
		var st unix.Stat_t
		err := unix.Lstat(p, &st)
		switch {
		case errors.Is(err, unix.ENOENT) && mk:
			if err := a.mkImplicit(p, strings.Join(next, "/")); err != nil {
				return "", err
			}
			cur = next
		case err != nil:
			return "", err
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			links++
			if links > 255 {
				return "", fmt.Errorf("%s: %w", rel, unix.ELOOP)
			}
			t, err := os.Readlink(p)
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(t, "/") {
				cur = nil
			}
			comps = append(splitPath(t), comps...)
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			cur = next
		default:
			return "", fmt.Errorf("%s: %w", strings.Join(next, "/"), unix.ENOTDIR)
		}
	}
	return filepath.Join(a.root, filepath.Join(cur...)), nil
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

// resolveLinkTarget finds the file a tar hardlink entry points to, inside root.
func (a *applier) resolveLinkTarget(name string) (string, error) {
	rel, err := cleanName(name)
	if err != nil {
		return "", err
	}
	if rel == "" {
		return "", fmt.Errorf("hardlink to the root")
	}
	dirRel, base := path.Split(rel)
	parent, err := a.resolveDir(dirRel, a.overlay)
	if err != nil {
		return "", fmt.Errorf("hardlink target %s: %w", name, err)
	}
	p := filepath.Join(parent, base)
	var st unix.Stat_t
	err = unix.Lstat(p, &st)
	if errors.Is(err, unix.ENOENT) && a.overlay {
		// Some tools link to a file of a lower layer; copy it up first, as overlay would.
		err = a.copyUp(rel, p, &st)
	}
	if err != nil {
		return "", fmt.Errorf("hardlink target %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return "", fmt.Errorf("hardlink target %s is a directory", name)
	}
	return p, nil
}

// mkImplicit makes a dir the tar holds entries in but no entry for. Over overlay lowers it takes
// the attributes of the dir the lowers show there, since an upper dir's attributes win.
func (a *applier) mkImplicit(p, rel string) error {
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	for _, l := range a.lowers {
		lp := filepath.Join(l, rel)
		var st unix.Stat_t
		if err := unix.Lstat(lp, &st); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			break
		}
		at, err := statAttrs(lp, &st)
		if err != nil {
			return err
		}
		a.times = append(a.times, dirTime{p, at.mtime.UnixNano(), at.atime.UnixNano()})
		return setAttrs(p, false, at, true)
	}
	return nil
}

// copyUp copies the file rel of the topmost lower holding it to p, with its attributes.
func (a *applier) copyUp(rel, p string, st *unix.Stat_t) error {
	for _, l := range a.lowers {
		lp := filepath.Join(l, rel)
		if err := unix.Lstat(lp, st); err != nil {
			continue
		}
		if isWhiteout(st) || st.Mode&unix.S_IFMT != unix.S_IFREG {
			break
		}
		at, err := statAttrs(lp, st)
		if err != nil {
			return err
		}
		if err := copyFileData(lp, p); err != nil {
			return err
		}
		if err := setAttrs(p, false, at, false); err != nil {
			return err
		}
		return unix.Lstat(p, st)
	}
	return unix.ENOENT
}
