// Package snapshot owns kiln's file system snapshots: overlay directories (a chain of committed
// lower dirs plus a writable upper), mounting them, the diff of a snapshot as an OCI layer tar, and
// applying a layer tar to a directory.
package snapshot

import (
	"context"
	"io"

	digest "github.com/opencontainers/go-digest"
)

// Layer is one committed layer blob: what a manifest lists and what rootfs.diff_ids holds.
type Layer struct {
	Digest    digest.Digest `json:"digest"`    // of the blob as stored (compressed)
	DiffID    digest.Digest `json:"diffID"`    // of the uncompressed tar
	Size      int64         `json:"size"`      // of the blob as stored
	MediaType string        `json:"mediaType"` // e.g. application/vnd.oci.image.layer.v1.tar+gzip
}

// Snapshotter keeps snapshots under one directory (ROOT/snapshots). A committed snapshot is
// named by the OCI chain ID of the layers it holds ("" is the empty snapshot, for scratch).
// Implementations: overlay (default) and copy (a fallback where overlay mounts are refused);
// both produce identical layers for the same changes.
type Snapshotter interface {
	// Prepare makes a writable snapshot over the committed snapshot parent and mounts it.
	Prepare(ctx context.Context, parent string) (*Active, error)
	// Commit unmounts a, writes its changes against its parent as a layer tar (OCI whiteouts),
	// compressed per opts, to w, and keeps it as the committed snapshot of the resulting chain
	// ID. It returns the layer and that chain ID.
	Commit(ctx context.Context, a *Active, w io.Writer, opts CommitOptions) (Layer, string, error)
	// Abort unmounts and removes an active snapshot without committing it.
	Abort(ctx context.Context, a *Active) error
	// Apply makes the committed snapshot parent+layer from an uncompressed layer tar read from r
	// (OCI whiteouts) and returns its chain ID. If that snapshot exists already, r is not read.
	Apply(ctx context.Context, parent string, diffID digest.Digest, r io.Reader) (string, error)
	// Has reports whether the committed snapshot chainID exists.
	Has(chainID string) bool
	// View makes the files of a committed snapshot readable at a path until release is called.
	View(ctx context.Context, chainID string) (root string, release func() error, err error)
	// Remove deletes a committed snapshot.
	Remove(ctx context.Context, chainID string) error
	// List returns the committed snapshots.
	List(ctx context.Context) ([]Info, error)
}

// Active is a writable snapshot, mounted; its files are seen and changed at Root.
type Active struct {
	Root   string // where the snapshot's files are seen (the merged mount)
	Parent string // chain ID of the committed parent
	ID     string // the snapshot's own directory name
}

// Info describes a committed snapshot.
type Info struct {
	ChainID string
	Parent  string
	Size    int64 // bytes of its own files on disk
}

// CommitOptions says how a layer blob is written.
type CommitOptions struct {
	Compression string // "gzip" (default) or "uncompressed"
	Level       int    // compression level; 0 means the default chosen by measurement
}

// ChainID is the OCI chain ID of parent's layers followed by a layer with diffID.
func ChainID(parent string, diffID digest.Digest) string {
	if parent == "" {
		return diffID.String()
	}
	return digest.FromString(parent + " " + diffID.String()).String()
}
