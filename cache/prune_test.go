package cache

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"kiln/snapshot"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeImage stores a config, the given layers and a manifest of them; it returns the manifest.
func writeImage(t *testing.T, s *Store, layers ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	cfg, err := s.WriteBlob(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","n":"`+string(rune('a'+len(layers)))+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: layers}
	b, _ := json.Marshal(m)
	d, err := s.WriteBlob(ocispec.MediaTypeImageManifest, b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func layer(t *testing.T, s *Store, content string) ocispec.Descriptor {
	t.Helper()
	d, err := s.WriteBlob(ocispec.MediaTypeImageLayerGzip, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	tagged := layer(t, s, "tagged layer")
	recorded := layer(t, s, "recorded layer")
	orphan := layer(t, s, "orphan layer")
	inIndex := layer(t, s, "layer under an index")
	m := writeImage(t, s, tagged)
	untaggedManifest := writeImage(t, s, orphan, orphan)
	m2 := writeImage(t, s, inIndex, inIndex, inIndex)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{m2}}
	ib, _ := json.Marshal(idx)
	idxDesc, err := s.WriteBlob(ocispec.MediaTypeImageIndex, ib)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("app", m); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("multi", idxDesc); err != nil {
		t.Fatal(err)
	}
	keyKept := digest.FromString("kept")
	keyGone := digest.FromString("gone")
	keyNoLayer := digest.FromString("no layer")
	chainKept, chainGone, chainNoLayer := digest.FromString("c1").String(), digest.FromString("c2").String(), digest.FromString("c3").String()
	s.PutStep(keyKept, StepRecord{Layer: &snapshot.Layer{Digest: recorded.Digest, DiffID: recorded.Digest}, ChainID: chainKept, Created: time.Now()})
	s.PutStep(keyGone, StepRecord{Layer: &snapshot.Layer{Digest: digest.FromString("deleted")}, ChainID: chainGone})
	s.PutStep(keyNoLayer, StepRecord{ChainID: chainNoLayer})

	rep, err := s.Prune(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []ocispec.Descriptor{tagged, recorded, m, m2, idxDesc, inIndex} {
		if err := s.Verify(d.Digest); err != nil {
			t.Errorf("kept blob %s: %v", d.Digest, err)
		}
	}
	for _, d := range []ocispec.Descriptor{orphan, untaggedManifest} {
		if s.Has(d.Digest) {
			t.Errorf("unreferenced blob %s survived", d.Digest)
		}
	}
	if rep.Blobs != 3 || rep.Records != 1 || rep.Reclaimed <= 0 { // orphan, its manifest, its config
		t.Errorf("report %+v", rep)
	}
	if !rep.Keep[chainKept] || !rep.Keep[chainNoLayer] || rep.Keep[chainGone] || len(rep.Keep) != 2 {
		t.Errorf("Keep = %v", rep.Keep)
	}
	if _, err := s.GetStep(keyGone); !errors.Is(err, ErrNotFound) {
		t.Errorf("record of a missing blob kept: %v", err)
	}
	if _, err := s.GetStep(keyKept); err != nil {
		t.Errorf("record removed: %v", err)
	}

	// all: step records go, and the blobs only they held.
	rep, err = s.Prune(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.Has(recorded.Digest) {
		t.Error("recorded-only blob survived prune all")
	}
	if rep.Records != 2 || len(rep.Keep) != 0 || rep.Blobs != 1 {
		t.Errorf("report %+v", rep)
	}
	for _, d := range []ocispec.Descriptor{tagged, m, m2, idxDesc, inIndex} {
		if err := s.Verify(d.Digest); err != nil {
			t.Errorf("tagged blob %s: %v", d.Digest, err)
		}
	}
}
