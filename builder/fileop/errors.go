package fileop

import "errors"

// ErrNotFound is wrapped by errors about a COPY/ADD source that does not
// exist in the source tree (or is hidden by .dockerignore).
var ErrNotFound = errors.New("not found")

// ErrURLNotSupported is wrapped when a URL reaches Copy or Checksum as a
// source: URLs are fetched with FetchURL first (ADD), and COPY rejects them
// as BuildKit does.
var ErrURLNotSupported = errors.New("remote URL sources must be fetched first")

// ErrNotDirectory is wrapped when several sources are copied to a
// destination that is not a directory.
var ErrNotDirectory = errors.New("When using COPY with more than one source file, the destination must be a directory and end with a /")
