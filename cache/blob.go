package cache

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BlobPath is where the blob d lives (whether or not it exists).
func (s *Store) BlobPath(d digest.Digest) string {
	return filepath.Join(s.ContentDir(), ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// checkDigest refuses digests the store cannot hold: malformed ones (which could also escape
// the blobs directory) and algorithms other than sha256.
func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %s: only sha256 is supported", d)
	}
	return nil
}

// Has reports whether blob d is stored.
func (s *Store) Has(d digest.Digest) bool {
	if checkDigest(d) != nil {
		return false
	}
	info, err := os.Stat(s.BlobPath(d))
	return err == nil && info.Mode().IsRegular()
}

// OpenBlob opens blob d for reading.
func (s *Store) OpenBlob(d digest.Digest) (io.ReadCloser, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	f, err := os.Open(s.BlobPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return f, nil
}

// ReadBlob reads a small blob whole and verifies it against d.
func (s *Store) ReadBlob(d digest.Digest) ([]byte, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.BlobPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if got := digest.FromBytes(b); got != d {
		return nil, fmt.Errorf("read blob %s: content hashes to %s: %w", d, got, ErrDigestMismatch)
	}
	return b, nil
}

// Verify checks that blob d is stored and hashes to d. Use it before reusing a blob that was
// written by an earlier process. It returns an error wrapping ErrNotFound or ErrDigestMismatch.
func (s *Store) Verify(d digest.Digest) error {
	r, err := s.OpenBlob(d)
	if err != nil {
		return err
	}
	defer r.Close()
	v := d.Verifier()
	if _, err := io.Copy(v, r); err != nil {
		return fmt.Errorf("verify blob %s: %w", d, err)
	}
	if !v.Verified() {
		return fmt.Errorf("verify blob %s: %w", d, ErrDigestMismatch)
	}
	return nil
}

// WriteBlob stores b with mediaType and returns its descriptor.
func (s *Store) WriteBlob(mediaType string, b []byte) (ocispec.Descriptor, error) {
	d := digest.FromBytes(b)
	w, err := s.NewWriter()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Close()
	if _, err := io.Copy(w, bytes.NewReader(b)); err != nil {
		return ocispec.Descriptor{}, err
	}
	if _, _, err := w.Commit(d); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

// NewWriter starts a blob written as a stream (into tmp/); Commit verifies and renames it in.
func (s *Store) NewWriter() (*BlobWriter, error) {
	f, err := os.CreateTemp(s.TmpDir(), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("new blob: %w", err)
	}
	return &BlobWriter{s: s, f: f, h: digest.SHA256.Hash()}, nil
}

// BlobWriter is a blob being written; Commit checks its digest and moves it into the store.
// Close discards it unless it was committed. A BlobWriter is not safe for concurrent use.
type BlobWriter struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// Write appends p to the blob, hashing it as it goes.
func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("write blob: already committed or closed")
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("write blob: %w", err)
	}
	return n, nil
}

// Size is the number of bytes written so far.
func (w *BlobWriter) Size() int64 { return w.n }

// Digest is the digest of the bytes written so far.
func (w *BlobWriter) Digest() digest.Digest { return digest.NewDigest(digest.SHA256, w.h) }

// Commit checks the blob against expected ("" accepts whatever was written), syncs it and moves
// it into the store. Another writer may have stored the same blob meanwhile: the rename
// replaces it with identical, verified content, so readers never see a partial blob.
func (w *BlobWriter) Commit(expected digest.Digest) (digest.Digest, int64, error) {
	if w.done {
		return "", 0, errors.New("commit blob: already committed or closed")
	}
	got := w.Digest()
	if expected != "" && got != expected {
		w.Close()
		return "", 0, fmt.Errorf("commit blob %s: content hashes to %s: %w", expected, got, ErrDigestMismatch)
	}
	if err := w.f.Sync(); err != nil {
		w.Close()
		return "", 0, fmt.Errorf("commit blob %s: sync: %w", got, err)
	}
	if err := w.f.Chmod(0o644); err != nil {
		w.Close()
		return "", 0, fmt.Errorf("commit blob %s: %w", got, err)
	}
	if err := w.f.Close(); err != nil {
		w.Close()
		return "", 0, fmt.Errorf("commit blob %s: %w", got, err)
	}
	w.done = true
	dst := w.s.BlobPath(got)
	if err := os.Rename(w.f.Name(), dst); err != nil {
		os.Remove(w.f.Name())
		return "", 0, fmt.Errorf("commit blob %s: %w", got, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return "", 0, fmt.Errorf("commit blob %s: %w", got, err)
	}
	return got, w.n, nil
}

// Close discards the blob if it was not committed.
func (w *BlobWriter) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard blob: %w", err)
	}
	return nil
}
