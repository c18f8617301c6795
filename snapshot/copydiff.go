package snapshot

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// copyDiffer finds what changed in a copy snapshot's tree against its parent's tree and lists it
// in the order and form an overlay upper dir would give for the same changes, so both
// snapshotters write the same layer.
type copyDiffer struct {
	ctx context.Context
	// dirs holds the inode of each dir as Prepare copied it: a dir with another inode now was
	// removed and made again, which overlay records as an opaque dir.
	dirs map[string]uint64
	// stamp is the ctime of a file made right after the copy. Every change to a file (data,
	// mode, owner, xattrs, links, renames) sets its ctime, so a file with an older ctime is
	// untouched and a dir with an older ctime has the same entries as its original.
	stamp   unix.Timespec
	changes []change
	size    int64 // bytes of regular files in the new tree
	sizes   map[fileKey]bool
}

type changeKind uint8

const (
	chEntry changeKind = iota
	chWhiteout
	chOpaque
)

type change struct {
	kind changeKind
	abs  string
	name string
	st   unix.Stat_t
}

func (d *copyDiffer) touched(st *unix.Stat_t) bool {
	c := st.Ctim
	return c.Sec > d.stamp.Sec || c.Sec == d.stamp.Sec && c.Nsec >= d.stamp.Nsec
}

func (d *copyDiffer) account(st *unix.Stat_t) {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	k := fileKey{uint64(st.Dev), st.Ino}
	if st.Nlink > 1 {
		if d.sizes[k] {
			return
		}
		d.sizes[k] = true
	}
	d.size += st.Size
}

// diffDir compares the dir newDir with oldDir (rel is the dir's path, "" for the root).
func (d *copyDiffer) diffDir(newDir, oldDir, rel string) error {
	return d.diffChildren(newDir, oldDir, rel, true)
}

// diffChildren lists the changes under newDir. When readOld is false, newDir is known to hold
// the same names as oldDir.
func (d *copyDiffer) diffChildren(newDir, oldDir, rel string, readOld bool) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	names, err := readNames(newDir)
	if err != nil {
		return err
	}
	inNew := make(map[string]bool, len(names))
	for _, n := range names {
		inNew[n] = true
	}
	if readOld {
		oldNames, err := readNames(oldDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, n := range oldNames {
			if !inNew[n] {
				names = append(names, n)
			}
		}
		sort.Strings(names)
	}
	for _, n := range names {
		np, op, name := filepath.Join(newDir, n), filepath.Join(oldDir, n), joinRel(rel, n)
		if !inNew[n] {
			d.changes = append(d.changes, change{kind: chWhiteout, name: name})
			continue
		}
		var nst, ost unix.Stat_t
		if err := unix.Lstat(np, &nst); err != nil {
			return err
		}
		d.account(&nst)
		if nst.Mode&unix.S_IFMT == unix.S_IFSOCK {
			continue // a tar cannot hold it
		}
		if nst.Mode&unix.S_IFMT != unix.S_IFDIR && !d.touched(&nst) {
			continue // in the copy as copied
		}
		oerr := unix.Lstat(op, &ost)
		if oerr != nil && !errors.Is(oerr, unix.ENOENT) {
			return oerr
		}
		if nst.Mode&unix.S_IFMT != unix.S_IFDIR {
			if oerr == nil {
				same, err := sameEntry(np, op, &nst, &ost)
				if err != nil {
					return err
				}
				if same {
					continue
				}
			}
			d.changes = append(d.changes, change{kind: chEntry, abs: np, name: name, st: nst})
			continue
		}
		if oerr != nil {
			if err := d.addAll(np, name, &nst, false); err != nil {
				return err
			}
			continue
		}
		// Overlay marks a dir opaque when it is made where a lower entry was deleted.
		if ost.Mode&unix.S_IFMT != unix.S_IFDIR || d.remade(np, name, &nst) {
			if err := d.addAll(np, name, &nst, true); err != nil {
				return err
			}
			continue
		}
		same := true
		if d.touched(&nst) {
			if same, err = sameEntry(np, op, &nst, &ost); err != nil {
				return err
			}
		}
		// A dir is listed when it changed or, as the parent of a change, when anything under
		// it is: taken back out if neither.
		mark := len(d.changes)
		d.changes = append(d.changes, change{kind: chEntry, abs: np, name: name, st: nst})
		if err := d.diffChildren(np, op, name, d.touched(&nst)); err != nil {
			return err
		}
		if same && len(d.changes) == mark+1 {
			d.changes = d.changes[:mark]
		}
	}
	return nil
}

// remade reports whether the dir at abs was removed and made again since the copy: its inode is
// not the one copied there, or (inode numbers are reused at once) it was born after the stamp.
func (d *copyDiffer) remade(abs, name string, st *unix.Stat_t) bool {
	if ino, ok := d.dirs[name]; !ok || ino != st.Ino {
		return true
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, abs, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &stx); err != nil || stx.Mask&unix.STATX_BTIME == 0 {
		return false
	}
	b := stx.Btime
	return b.Sec > d.stamp.Sec || b.Sec == d.stamp.Sec && int64(b.Nsec) >= d.stamp.Nsec
}

// addAll lists the entry at abs and, for a dir, everything under it.
func (d *copyDiffer) addAll(abs, name string, st *unix.Stat_t, opaque bool) error {
	d.changes = append(d.changes, change{kind: chEntry, abs: abs, name: name, st: *st})
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	if opaque {
		d.changes = append(d.changes, change{kind: chOpaque, name: name})
	}
	names, err := readNames(abs)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(abs, n)
		var cst unix.Stat_t
		if err := unix.Lstat(p, &cst); err != nil {
			return err
		}
		d.account(&cst)
		if cst.Mode&unix.S_IFMT == unix.S_IFSOCK {
			continue
		}
		if err := d.addAll(p, joinRel(name, n), &cst, false); err != nil {
			return err
		}
	}
	return nil
}

// write writes the listed changes as a layer.
func (d *copyDiffer) write(w io.Writer, opts CommitOptions) (Layer, error) {
	lw, err := newLayerWriter(d.ctx, w, opts)
	if err != nil {
		return Layer{}, err
	}
	for i := range d.changes {
		c := &d.changes[i]
		switch c.kind {
		case chEntry:
			err = lw.add(c.abs, c.name, &c.st)
		case chWhiteout:
			err = lw.addWhiteout(c.name)
		case chOpaque:
			err = lw.addOpaque(c.name)
		}
		if err != nil {
			lw.abort()
			return Layer{}, err
		}
	}
	return lw.finish()
}
