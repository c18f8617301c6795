package exporter

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"kiln/cache"
	"kiln/snapshot"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// The local and tar outputs are the image's final root file system: its layers applied in
// order (whiteouts and all) by snapshot.ApplyTar, into a directory or then into one tar.

// applyLayers applies img's layers, bottom first, to dir, checking each blob against its digest
// and its uncompressed tar against its diff ID as it streams.
func applyLayers(ctx context.Context, store *cache.Store, img Image, dir string) error {
	for i, l := range img.Layers {
		if err := applyLayer(ctx, store, l, dir); err != nil {
			return fmt.Errorf("apply layer %d (%s): %w", i, l.Digest, err)
		}
	}
	return nil
}

func applyLayer(ctx context.Context, store *cache.Store, l snapshot.Layer, dir string) error {
	blob, err := store.OpenBlob(l.Digest)
	if err != nil {
		return err
	}
	defer blob.Close()
	blobV := l.Digest.Verifier()
	tarR, closeTar, err := Decompress(l.MediaType, io.TeeReader(blob, blobV))
	if err != nil {
		return err
	}
	defer closeTar()
	diffV := l.DiffID.Verifier()
	r := io.TeeReader(tarR, diffV)
	if err := snapshot.ApplyTar(ctx, dir, r); err != nil {
		return err
	}
	// The tar reader stops at the end-of-archive marker; hash the padding after it too.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, io.TeeReader(blob, blobV)); err != nil {
		return err
	}
	if !blobV.Verified() {
		return fmt.Errorf("blob: %w", cache.ErrDigestMismatch)
	}
	if !diffV.Verified() {
		return fmt.Errorf("uncompressed tar does not match diff ID %s: %w", l.DiffID, cache.ErrDigestMismatch)
	}
	return nil
}

// Decompress returns the uncompressed tar of a layer blob read from r, by its media type
// (gzip, zstd or none; OCI and Docker spellings). The returned func releases the decoder.
func Decompress(mediaType string, r io.Reader) (io.Reader, func(), error) {
	switch {
	case strings.HasSuffix(mediaType, "+gzip") || strings.HasSuffix(mediaType, ".tar.gzip") || strings.HasSuffix(mediaType, ".gzip"):
		zr, err := pgzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case strings.HasSuffix(mediaType, "+zstd") || strings.HasSuffix(mediaType, ".zstd"):
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	case strings.HasSuffix(mediaType, ".tar") || strings.HasSuffix(mediaType, "rootfs.diff.tar") || mediaType == "":
		return r, func() {}, nil
	}
	return nil, nil, fmt.Errorf("layer media type %q: unknown compression", mediaType)
}

// exportLocal writes the root file system to the directory dest. A new (or empty) dest appears
// whole when done. Into an existing directory, the tree is made aside and then each of its
// top-level entries replaces the entry of that name in dest, as buildx's local output
// overwrites; other files in dest are left alone.
func exportLocal(ctx context.Context, store *cache.Store, img Image, dest string) error {
	return intoDir(dest, func(dir string, fresh bool) error {
		if fresh {
			return applyLayers(ctx, store, img, dir)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dest)), "."+filepath.Base(dest)+".kiln-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if err := applyLayers(ctx, store, img, tmp); err != nil {
			return err
		}
		entries, err := os.ReadDir(tmp)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
			if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
		return nil
	})
}

// exportRootfsTar writes the root file system as one tar at out.Dest (or stdout).
func exportRootfsTar(ctx context.Context, store *cache.Store, img Image, out Output) error {
	tmp, err := os.MkdirTemp(store.TmpDir(), "rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := applyLayers(ctx, store, img, tmp); err != nil {
		return err
	}
	return writeFileAtomic(out.Dest, out.Stdout, func(w io.Writer) error {
		return TarTree(ctx, tmp, w)
	})
}
