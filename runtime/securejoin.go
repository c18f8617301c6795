package runtime

import (
	"errors"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// SecureJoin joins path onto root as if root were "/": every symlink met on the way is resolved
// inside root (an absolute target starts again at root, ".." stops at root), so the result is
// always root or a path below it. It resolves the path once; it does not guard against the tree
// changing afterwards, so use it on trees no untrusted process is running in.
func SecureJoin(root, path string) (string, error) {
	if root == "" {
		return "", errors.New("secure join: empty root")
	}
	return securejoin.SecureJoin(root, path)
}
