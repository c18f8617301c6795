package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	overlayXattrPrefix = "trusted.overlay."
	opaqueXattr        = "trusted.overlay.opaque"
	paxXattrPrefix     = "SCHILY.xattr."
)

// listXattrs returns the extended attributes of path (not following a symlink), without
// overlay's own trusted.overlay.* ones, names sorted.
func listXattrs(path string) (map[string]string, error) {
	buf := make([]byte, 1024)
	var n int
	var err error
	for {
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err2 := unix.Llistxattr(path, nil)
			if err2 != nil {
				return nil, fmt.Errorf("list xattrs of %s: %w", path, err2)
			}
			buf = make([]byte, sz+64)
			continue
		}
		break
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	if n == 0 {
		return nil, nil
	}
	var out map[string]string
	for _, name := range bytes.Split(buf[:n-1], []byte{0}) {
		k := string(name)
		if k == "" || strings.HasPrefix(k, overlayXattrPrefix) {
			continue
		}
		v, err := getXattr(path, k)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = string(v)
	}
	return out, nil
}

func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err2 := unix.Lgetxattr(path, name, nil)
			if err2 != nil {
				return nil, fmt.Errorf("get xattr %s of %s: %w", name, path, err2)
			}
			buf = make([]byte, sz+64)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get xattr %s of %s: %w", name, path, err)
		}
		return buf[:n], nil
	}
}

// isOpaque reports whether dir is an overlay opaque dir.
func isOpaque(dir string) bool {
	b := make([]byte, 4)
	n, err := unix.Lgetxattr(dir, opaqueXattr, b)
	return err == nil && n == 1 && b[0] == 'y'
}

func setXattrs(path string, xs map[string]string) error {
	keys := make([]string, 0, len(xs))
	for k := range xs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := unix.Lsetxattr(path, k, []byte(xs[k]), 0); err != nil {
			return fmt.Errorf("set xattr %s on %s: %w", k, path, err)
		}
	}
	return nil
}

func equalXattrs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
