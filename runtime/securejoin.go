package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxSymlinks bounds the symlinks SecureJoin follows, as the kernel bounds path walks (ELOOP).
const maxSymlinks = 255

// SecureJoin joins path onto root as if root were "/": every symlink met on the way is resolved
// inside root (an absolute target starts again at root, ".." stops at root), so the result is
// always root or a path below it. Components that do not exist are appended as they are, so the
// result may name a file still to be created. It resolves the path once; it does not guard
// against the tree changing afterwards, so use it on trees no untrusted process is running in.
func SecureJoin(root, path string) (string, error) {
	if root == "" {
		return "", errors.New("secure join: empty root")
	}
	root = filepath.Clean(root)
	var (
		resolved string // below root, cleaned, without a leading slash; "" is root itself
		links    int
	)
	rest := path
	for rest != "" {
		var comp string
		rest = strings.TrimLeft(rest, "/")
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			comp, rest = rest[:i], rest[i+1:]
		} else {
			comp, rest = rest, ""
		}
		switch comp {
		case "", ".":
			continue
		case "..":
			// Lexical is right here: resolved never holds a symlink, so its parent is real.
			if i := strings.LastIndexByte(resolved, '/'); i >= 0 {
				resolved = resolved[:i]
			} else {
				resolved = ""
			}
			continue
		}
		next := comp
		if resolved != "" {
			next = resolved + "/" + comp
		}
		full := filepath.Join(root, next)
		fi, err := os.Lstat(full)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				// Missing: the rest is taken lexically; nothing below a missing name can be a link.
				resolved = next
				continue
			}
			return "", fmt.Errorf("secure join %s in %s: %w", path, root, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("secure join %s in %s: %w", path, root, syscall.ELOOP)
		}
		target, err := os.Readlink(full)
		if err != nil {
			return "", fmt.Errorf("secure join %s in %s: %w", path, root, err)
		}
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		rest = target + "/" + rest
	}
	return filepath.Join(root, resolved), nil
}
