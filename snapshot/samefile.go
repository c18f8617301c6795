package snapshot

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sameEntry reports whether the file at np (stat n) is, for a layer, the same as the one at op
// (stat o): a file overlay copied up only to link it, or a dir copied up to make and remove an
// entry whose mtime was restored, is not a change. Both differs use it, so both snapshotters
// skip the same entries.
//
// Compared: type, permission bits, owner, mtime to the nanosecond, xattrs (overlay's own left
// out), size of regular files, rdev of devices, symlink targets; the link count is not (a new
// link is a change of the new name only). Like containerd's differ, regular files whose mtime
// has no nanoseconds (as a tar restores them) have their bytes compared too, since such a time
// says little.
func sameEntry(np, op string, n, o *unix.Stat_t) (bool, error) {
	if n.Mode != o.Mode || n.Uid != o.Uid || n.Gid != o.Gid {
		return false, nil
	}
	// A directory's mtime is not compared, as in BuildKit's differ: creating and removing a
	// file in a lower directory leaves it out of the layer.
	if n.Mode&unix.S_IFMT != unix.S_IFDIR && n.Mtim != o.Mtim {
		return false, nil
	}
	switch n.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if n.Size != o.Size {
			return false, nil
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if n.Rdev != o.Rdev {
			return false, nil
		}
	case unix.S_IFLNK:
		nt, err := os.Readlink(np)
		if err != nil {
			return false, err
		}
		ot, err := os.Readlink(op)
		if err != nil {
			return false, err
		}
		if nt != ot {
			return false, nil
		}
	}
	nx, err := listXattrs(np)
	if err != nil {
		return false, err
	}
	ox, err := listXattrs(op)
	if err != nil {
		return false, err
	}
	if !equalXattrs(nx, ox) {
		return false, nil
	}
	if n.Mode&unix.S_IFMT == unix.S_IFREG && n.Size > 0 && n.Mtim.Nsec == 0 {
		return sameContent(np, op)
	}
	return true, nil
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 256<<10), make([]byte, 256<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == io.EOF || eb == io.ErrUnexpectedEOF, nil
		}
		if ea != nil {
			return false, fmt.Errorf("read %s: %w", a, ea)
		}
		if eb != nil {
			return false, fmt.Errorf("read %s: %w", b, eb)
		}
	}
}
