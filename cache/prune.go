package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Prune deletes blobs and step records that no tag needs. With all false it removes the blobs
// reachable neither from a tag (index -> manifests -> config and layers) nor from a step
// record, and the records whose layer blob is gone; with all true it removes every step record
// too, so only tagged images' blobs stay. Keep in the report lists the chain IDs of the records
// left: the caller removes the other snapshots.
//
// Prune takes the state directory's lock exclusively unless this Store already holds it.
func (s *Store) Prune(ctx context.Context, all bool) (PruneReport, error) {
	rep := PruneReport{Keep: map[string]bool{}}
	if !s.holdsExclusive() {
		unlock, err := s.Lock(ctx, true)
		if err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		defer unlock()
	}

	live := map[digest.Digest]bool{}
	tags, err := s.Tags()
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	for _, d := range tags {
		if err := s.markReachable(ctx, d.Digest, live, 0); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
	}

	keys, err := s.stepKeys()
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		rec, err := s.GetStep(k)
		drop := all || err != nil // an unreadable record is useless: drop it
		if !drop && rec.Layer != nil && !s.Has(rec.Layer.Digest) {
			drop = true
		}
		if drop {
			if err := os.Remove(s.stepPath(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return rep, fmt.Errorf("prune: remove step record %s: %w", k, err)
			}
			rep.Records++
			continue
		}
		if rec.Layer != nil {
			live[rec.Layer.Digest] = true
		}
		if rec.ChainID != "" {
			rep.Keep[rec.ChainID] = true
		}
	}

	entries, err := os.ReadDir(s.blobsDir())
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() == nil && live[d] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if err := os.RemoveAll(filepath.Join(s.blobsDir(), e.Name())); err != nil {
			return rep, fmt.Errorf("prune: remove blob %s: %w", d, err)
		}
		rep.Blobs++
		rep.Reclaimed += info.Size()
	}
	// Nobody else runs (we hold the lock exclusively): temporary leftovers can go too.
	if err := cleanTmp(s.tmpRoot(), time.Minute); err != nil {
		return rep, fmt.Errorf("prune: clean tmp: %w", err)
	}
	return rep, nil
}

// node is what Prune needs of a manifest or an index, whatever its media type (OCI or Docker).
type node struct {
	Config    *ocispec.Descriptor  `json:"config,omitempty"`
	Layers    []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests []ocispec.Descriptor `json:"manifests,omitempty"`
}

// markReachable marks d and, if it is a manifest or index, what it refers to. Missing or
// unreadable children are skipped: Prune keeps what exists and is reachable.
func (s *Store) markReachable(ctx context.Context, d digest.Digest, live map[digest.Digest]bool, depth int) error {
	if live[d] || depth > 8 {
		return nil
	}
	live[d] = true
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := s.ReadBlob(d)
	if err != nil {
		return nil
	}
	var n node
	if json.Unmarshal(b, &n) != nil {
		return nil
	}
	if n.Config != nil {
		live[n.Config.Digest] = true
	}
	for _, l := range n.Layers {
		live[l.Digest] = true
	}
	for _, m := range n.Manifests {
		if err := s.markReachable(ctx, m.Digest, live, depth+1); err != nil {
			return err
		}
	}
	return nil
}
