// Package cache owns kiln's state directory: the content store (an OCI image layout with tags in
// its index.json), the step records that make the build cache, locks, and garbage collection.
package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"kiln/snapshot"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrNotFound is returned when a blob, tag or record does not exist.
var ErrNotFound = errors.New("not found")

// ErrDigestMismatch is returned when content does not hash to the digest it is stored or
// expected under: a corrupt blob, or a download that is not what was asked for.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrAmbiguous is returned by Resolve when a digest prefix matches more than one image.
var ErrAmbiguous = errors.New("ambiguous reference")

// Store is an open state directory.
type Store struct {
	root string
	tmp  *procTmp // this process's own directory under ROOT/tmp

	// mu guards exclusive: how many Lock(ctx, true) this Store holds, so Prune can tell whether
	// its caller already holds the exclusive lock (flock would deadlock on a second one).
	mu        sync.Mutex
	exclusive int
}

// Open opens (creating if needed) the state directory root and clears its tmp/ of what
// processes that are gone left behind.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open state directory %s: %w", root, err)
	}
	s := &Store{root: abs}
	for _, d := range []string{s.blobsDir(), s.SnapshotsDir(), s.stepsDir(), s.tmpRoot()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open state directory %s: %w", abs, err)
		}
	}
	if err := cleanTmp(s.tmpRoot(), time.Minute); err != nil {
		return nil, fmt.Errorf("open state directory %s: clean tmp: %w", abs, err)
	}
	if s.tmp, err = newProcTmp(s.tmpRoot()); err != nil {
		return nil, fmt.Errorf("open state directory %s: %w", abs, err)
	}
	if err := s.initLayout(); err != nil {
		return nil, fmt.Errorf("open state directory %s: %w", abs, err)
	}
	return s, nil
}

// Close removes this Store's temporary directory. The Store must not be used afterwards.
func (s *Store) Close() error {
	return s.tmp.remove()
}

// Root is the state directory. SnapshotsDir is where the snapshotter keeps its snapshots;
// TmpDir is for work in progress on the same file system: it is this process's own directory,
// removed by the next Open after the process is gone.
func (s *Store) Root() string         { return s.root }
func (s *Store) SnapshotsDir() string { return filepath.Join(s.root, "snapshots") }
func (s *Store) TmpDir() string       { return s.tmp.dir }

// CacheDir is ROOT/cache, for step records and other caches (cache mounts, stat records).
func (s *Store) CacheDir() string { return filepath.Join(s.root, "cache") }

// ContentDir is ROOT/content, the OCI image layout.
func (s *Store) ContentDir() string { return filepath.Join(s.root, "content") }

func (s *Store) blobsDir() string {
	return filepath.Join(s.ContentDir(), ocispec.ImageBlobsDir, "sha256")
}
func (s *Store) stepsDir() string  { return filepath.Join(s.CacheDir(), "steps") }
func (s *Store) tmpRoot() string   { return filepath.Join(s.root, "tmp") }
func (s *Store) indexPath() string { return filepath.Join(s.ContentDir(), ocispec.ImageIndexFile) }

// initLayout writes oci-layout and an empty index.json when they are missing.
func (s *Store) initLayout() error {
	layout := filepath.Join(s.ContentDir(), ocispec.ImageLayoutFile)
	if _, err := os.Stat(layout); errors.Is(err, os.ErrNotExist) {
		if err := s.WriteFileAtomic(layout, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`), 0o644); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if _, err := os.Stat(s.indexPath()); errors.Is(err, os.ErrNotExist) {
		return s.updateIndex(func(*ocispec.Index) error { return nil })
	} else if err != nil {
		return err
	}
	return nil
}

// StepRecord is what a cached step produced: its layer (nil when the step changed no files and
// made no layer) and the snapshot it left.
type StepRecord struct {
	Layer   *snapshot.Layer `json:"layer,omitempty"`
	ChainID string          `json:"chainID"` // snapshot after the step
	Created time.Time       `json:"created"` // when the step first ran: reused so a cached build gives the same image
}

// PruneReport says what Prune removed and which snapshots are still referenced.
type PruneReport struct {
	Blobs     int
	Records   int
	Reclaimed int64
	Keep      map[string]bool // chain IDs still referenced by step records
}
