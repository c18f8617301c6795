package fileop

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// maxSymlinks bounds symlink resolution, as the kernel's ELOOP limit does,
// so a link cycle in an untrusted tree ends in an error instead of a hang.
const maxSymlinks = 255

// ErrTooManyLinks is returned when resolving a path inside a root meets more
// than maxSymlinks symbolic links.
// It is ELOOP, as the kernel and filepath-securejoin report it.
var ErrTooManyLinks error = syscall.ELOOP

// SecureJoin joins p to root as if root were the file system's "/": every
// symlink met on the way (including the last component) is resolved inside
// root, absolute link targets restart at root and ".." never climbs above it.
// Components that do not exist are joined lexically. The result is always
// root or a path below it.
func SecureJoin(root, p string) (string, error) {
	return securejoin.SecureJoin(root, p)
}

// secureJoinParent is SecureJoin that leaves the last component unresolved,
// for operations (remove, replace, lchown) that act on a link itself.
func secureJoinParent(root, p string) (string, error) {
	clean := path.Clean("/" + p)
	if clean == "/" {
		return filepath.Clean(root), nil
	}
	dir, err := securejoin.SecureJoin(root, path.Dir(clean))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, path.Base(clean)), nil
}

// resolveInRoot walks unsafe component by component below root, as SecureJoin does, for the
// context's sources: it can leave the last component unresolved and report every link followed.
// onLink, when
// set, is told the root-relative path of every symlink that gets followed; it
// lets a caller reject links that are hidden from it (ignored context files).
func resolveInRoot(root, unsafe string, followLast bool, onLink func(rel string) error) (string, error) {
	root = filepath.Clean(root)
	resolved := "" // root-relative, clean, free of symlinks
	remaining := unsafe
	links := 0
	for remaining != "" {
		var part string
		if i := strings.IndexByte(remaining, '/'); i >= 0 {
			part, remaining = remaining[:i], remaining[i+1:]
		} else {
			part, remaining = remaining, ""
		}
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = parentRel(resolved)
			continue
		}
		next := part
		if resolved != "" {
			next = resolved + "/" + part
		}
		if !followLast && strings.Trim(remaining, "/") == "" {
			resolved = next
			break
		}
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				resolved = next
				continue
			}
			return "", fmt.Errorf("resolve %q in %s: %w", unsafe, root, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("resolve %q in %s: %w", unsafe, root, ErrTooManyLinks)
		}
		if onLink != nil {
			if err := onLink(next); err != nil {
				return "", err
			}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolve %q in %s: %w", unsafe, root, err)
		}
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		remaining = target + "/" + remaining
	}
	if resolved == "" {
		return root, nil
	}
	return filepath.Join(root, resolved), nil
}

func parentRel(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}
