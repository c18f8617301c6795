package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"kiln/cache"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCommitAndLoad(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	img, desc := testImage(t, s)
	if desc.MediaType != ocispec.MediaTypeImageManifest || desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != "amd64" {
		t.Fatalf("manifest descriptor %+v", desc)
	}
	var m ocispec.Manifest
	b, err := s.ReadBlob(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.SchemaVersion != 2 || m.MediaType != ocispec.MediaTypeImageManifest || m.Config.MediaType != ocispec.MediaTypeImageConfig || len(m.Layers) != 2 {
		t.Fatalf("manifest %s", b)
	}
	for i, l := range m.Layers {
		if l.Digest != img.Layers[i].Digest || l.Size != img.Layers[i].Size || l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer %d = %+v", i, l)
		}
	}
	// The config's rootfs is the layers' diff IDs.
	var cfg ocispec.Image
	cb, _ := s.ReadBlob(m.Config.Digest)
	json.Unmarshal(cb, &cfg)
	if cfg.RootFS.Type != "layers" || !reflect.DeepEqual(cfg.RootFS.DiffIDs, []digest.Digest{img.Layers[0].DiffID, img.Layers[1].DiffID}) {
		t.Errorf("rootfs %+v", cfg.RootFS)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || cfg.Config.Cmd[0] != "/bin/hello" {
		t.Errorf("config %s", cb)
	}

	// Deterministic: the same image again gives the same digest.
	again, err := Commit(ctx, s, img)
	if err != nil || again.Digest != desc.Digest {
		t.Errorf("second commit: %s, %v; want %s", again.Digest, err, desc.Digest)
	}

	got, gdesc, err := Load(ctx, s, ocispec.Descriptor{Digest: desc.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if gdesc.Digest != desc.Digest || gdesc.MediaType != ocispec.MediaTypeImageManifest || gdesc.Size != desc.Size {
		t.Errorf("Load descriptor %+v", gdesc)
	}
	if !reflect.DeepEqual(got.Layers, img.Layers) {
		t.Errorf("Load layers %+v, want %+v", got.Layers, img.Layers)
	}
	if got.Config.Config.Cmd[0] != "/bin/hello" || len(got.Config.History) != 2 {
		t.Errorf("Load config %+v", got.Config)
	}
}

func TestCommitMissingLayer(t *testing.T) {
	s := openStore(t)
	img, _ := testImage(t, s)
	img.Layers[1].Digest = digest.FromString("not stored")
	if _, err := Commit(context.Background(), s, img); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Commit with a missing layer = %v, want ErrNotFound", err)
	}
}

// TestLoadIndexAndDockerTypes: an index (OCI or Docker list) resolves to its linux/amd64
// manifest, and Docker schema 2 manifests load like OCI ones.
func TestLoadIndexAndDockerTypes(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	img, amd := testImage(t, s)

	// The same image with Docker media types.
	mb, _ := s.ReadBlob(amd.Digest)
	var m ocispec.Manifest
	json.Unmarshal(mb, &m)
	m.MediaType = MediaTypeDockerManifest
	m.Config.MediaType = MediaTypeDockerConfig
	for i := range m.Layers {
		m.Layers[i].MediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	}
	db, _ := json.Marshal(m)
	dockerDesc, err := s.WriteBlob(MediaTypeDockerManifest, db)
	if err != nil {
		t.Fatal(err)
	}
	arm := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("arm"), Size: 3, Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}}
	att := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("att"), Size: 3, Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}}
	for _, tc := range []struct {
		name     string
		listType string
		entry    ocispec.Descriptor
	}{
		{"oci index", ocispec.MediaTypeImageIndex, amd},
		{"docker list", MediaTypeDockerManifestList, ocispec.Descriptor{MediaType: MediaTypeDockerManifest, Digest: dockerDesc.Digest, Size: dockerDesc.Size, Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: tc.listType, Manifests: []ocispec.Descriptor{arm, tc.entry, att}}
			ib, _ := json.Marshal(idx)
			idesc, err := s.WriteBlob(tc.listType, ib)
			if err != nil {
				t.Fatal(err)
			}
			got, mdesc, err := Load(ctx, s, idesc)
			if err != nil {
				t.Fatal(err)
			}
			if mdesc.Digest != tc.entry.Digest || mdesc.MediaType != tc.entry.MediaType {
				t.Errorf("picked %+v, want %s", mdesc, tc.entry.Digest)
			}
			if len(got.Layers) != 2 || got.Layers[1].DiffID != img.Layers[1].DiffID || got.Layers[0].Digest != img.Layers[0].Digest {
				t.Errorf("layers %+v", got.Layers)
			}
		})
	}
	// An index without linux/amd64.
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{arm}}
	ib, _ := json.Marshal(idx)
	idesc, _ := s.WriteBlob(ocispec.MediaTypeImageIndex, ib)
	if _, _, err := Load(ctx, s, idesc); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("index without amd64: %v", err)
	}
	// Not an image at all.
	junk, _ := s.WriteBlob("text/plain", []byte(`{"hello":1}`))
	if _, _, err := Load(ctx, s, junk); err == nil {
		t.Error("Load of a non-manifest succeeded")
	}
}
