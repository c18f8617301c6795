package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

func (s *Store) stepPath(key digest.Digest) string {
	return filepath.Join(s.stepsDir(), key.Encoded()+".json")
}

// GetStep returns the record of a step's cache key, or ErrNotFound.
func (s *Store) GetStep(key digest.Digest) (StepRecord, error) {
	var rec StepRecord
	if err := checkDigest(key); err != nil {
		return rec, fmt.Errorf("step record: %w", err)
	}
	b, err := os.ReadFile(s.stepPath(key))
	if errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("step record %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("step record %s: %w", key, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("step record %s: %w", key, err)
	}
	return rec, nil
}

// PutStep records a step's result atomically.
func (s *Store) PutStep(key digest.Digest, rec StepRecord) error {
	if err := checkDigest(key); err != nil {
		return fmt.Errorf("put step record: %w", err)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("put step record %s: %w", key, err)
	}
	if err := s.WriteFileAtomic(s.stepPath(key), b, 0o644); err != nil {
		return fmt.Errorf("put step record %s: %w", key, err)
	}
	return nil
}

// stepKeys lists the keys of all step records.
func (s *Store) stepKeys() ([]digest.Digest, error) {
	entries, err := os.ReadDir(s.stepsDir())
	if err != nil {
		return nil, fmt.Errorf("list step records: %w", err)
	}
	var keys []digest.Digest
	for _, e := range entries {
		hex, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, hex)
		if d.Validate() == nil {
			keys = append(keys, d)
		}
	}
	return keys, nil
}
