package fileop

import (
	"bytes"
	"errors"
	"sort"

	"golang.org/x/sys/unix"
)

// listXattrs returns src's extended attributes sorted by name (nil when it
// has none or the file system has no xattrs). buf is scratch space.
func listXattrs(src string, buf []byte) (map[string][]byte, []string, error) {
	n, err := unix.Llistxattr(src, buf)
	if errors.Is(err, unix.ERANGE) {
		sz, err2 := unix.Llistxattr(src, nil)
		if err2 != nil {
			return nil, nil, err2
		}
		buf = make([]byte, sz)
		n, err = unix.Llistxattr(src, buf)
	}
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, nil
	}
	vals := map[string][]byte{}
	var names []string
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		k := string(name)
		v, err := getXattr(src, k)
		if err != nil {
			continue // raced away, or not readable: best effort, as BuildKit
		}
		vals[k] = v
		names = append(names, k)
	}
	sort.Strings(names)
	return vals, names, nil
}

func getXattr(p, name string) ([]byte, error) {
	sz, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, err
	}
	v := make([]byte, sz)
	n, err := unix.Lgetxattr(p, name, v)
	if err != nil {
		return nil, err
	}
	return v[:n], nil
}

// copyXattrs copies src's extended attributes to dst, best effort: BuildKit
// logs and ignores xattrs it can't read or set, so a copy never fails on
// them.
func copyXattrs(src, dst string, buf []byte) {
	vals, names, err := listXattrs(src, buf)
	if err != nil {
		return
	}
	for _, k := range names {
		_ = unix.Lsetxattr(dst, k, vals[k], 0)
	}
}
