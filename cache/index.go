package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// minPrefix is the shortest digest prefix Resolve accepts, as docker's short image IDs.
const minPrefix = 12

// Tag points name (a full reference, e.g. docker.io/library/app:latest; short forms are
// normalised) at desc in index.json, replacing what name pointed at before.
func (s *Store) Tag(name string, desc ocispec.Descriptor) error {
	full, err := NormalizeName(name)
	if err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	if err := checkDigest(desc.Digest); err != nil {
		return fmt.Errorf("tag %s: %w", full, err)
	}
	if !s.Has(desc.Digest) {
		return fmt.Errorf("tag %s: manifest %s: %w", full, desc.Digest, ErrNotFound)
	}
	d := desc
	d.Annotations = map[string]string{}
	for k, v := range desc.Annotations {
		d.Annotations[k] = v
	}
	d.Annotations[ocispec.AnnotationRefName] = full
	err = s.updateIndex(func(idx *ocispec.Index) error {
		idx.Manifests = withoutName(idx.Manifests, full)
		idx.Manifests = append(idx.Manifests, d)
		return nil
	})
	if err != nil {
		return fmt.Errorf("tag %s: %w", full, err)
	}
	return nil
}

// Untag removes name.
func (s *Store) Untag(name string) error {
	full, err := NormalizeName(name)
	if err != nil {
		return fmt.Errorf("untag: %w", err)
	}
	err = s.updateIndex(func(idx *ocispec.Index) error {
		n := len(idx.Manifests)
		idx.Manifests = withoutName(idx.Manifests, full)
		if len(idx.Manifests) == n {
			return fmt.Errorf("image %s: %w", full, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("untag %s: %w", full, err)
	}
	return nil
}

func withoutName(ds []ocispec.Descriptor, full string) []ocispec.Descriptor {
	out := ds[:0]
	for _, d := range ds {
		if d.Annotations[ocispec.AnnotationRefName] != full {
			out = append(out, d)
		}
	}
	return out
}

// Tags lists the tagged descriptors, each with its full name in the ref.name annotation,
// sorted by name.
func (s *Store) Tags() ([]ocispec.Descriptor, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]ocispec.Descriptor, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] != "" {
			out = append(out, d)
		}
	}
	return out, nil
}

// Resolve returns the descriptor tagged name, or ErrNotFound. name is an image name in short
// or full form ("app", "app:latest", "127.0.0.1:5000/busybox:latest"), or the digest of a
// tagged manifest ("sha256:<hex>"), or a unique prefix of at least 12 hex digits of one, with
// or without "sha256:".
func (s *Store) Resolve(name string) (ocispec.Descriptor, error) {
	tags, err := s.Tags()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", name, err)
	}
	if hex, ok := strings.CutPrefix(name, string(digest.SHA256)+":"); ok {
		return resolvePrefix(tags, name, hex)
	}
	full, nerr := NormalizeName(name)
	if nerr == nil {
		for _, d := range tags {
			if d.Annotations[ocispec.AnnotationRefName] == full {
				return d, nil
			}
		}
	}
	if isHex(name) && len(name) >= minPrefix {
		return resolvePrefix(tags, name, name)
	}
	if nerr != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve: %w", nerr)
	}
	return ocispec.Descriptor{}, fmt.Errorf("image %s: %w", name, ErrNotFound)
}

func resolvePrefix(tags []ocispec.Descriptor, name, hex string) (ocispec.Descriptor, error) {
	if !isHex(hex) || len(hex) < minPrefix || len(hex) > 64 {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: a digest needs %d to 64 lower-case hex digits", name, minPrefix)
	}
	var found *ocispec.Descriptor
	for i, d := range tags {
		if !strings.HasPrefix(d.Digest.Encoded(), hex) {
			continue
		}
		if found != nil && found.Digest != d.Digest {
			return ocispec.Descriptor{}, fmt.Errorf("resolve %s: matches %s and %s: %w", name, found.Digest, d.Digest, ErrAmbiguous)
		}
		if found == nil {
			found = &tags[i]
		}
	}
	if found == nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %s: %w", name, ErrNotFound)
	}
	return *found, nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Store) readIndex() (ocispec.Index, error) {
	var idx ocispec.Index
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return emptyIndex(), nil
	}
	if err != nil {
		return idx, fmt.Errorf("read index: %w", err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("read index %s: %w", s.indexPath(), err)
	}
	return idx, nil
}

func emptyIndex() ocispec.Index {
	return ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}
}

// updateIndex changes index.json under an exclusive lock on ROOT/lock-index, so concurrent
// taggers (in this or other processes) do not lose each other's changes, and replaces it
// atomically, so readers need no lock.
func (s *Store) updateIndex(change func(*ocispec.Index) error) error {
	unlock, err := LockFile(context.Background(), filepath.Join(s.root, "lock-index"), true, true)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := change(&idx); err != nil {
		return err
	}
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	sort.SliceStable(idx.Manifests, func(i, j int) bool {
		return idx.Manifests[i].Annotations[ocispec.AnnotationRefName] < idx.Manifests[j].Annotations[ocispec.AnnotationRefName]
	})
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	return s.WriteFileAtomic(s.indexPath(), append(b, '\n'), 0o644)
}
