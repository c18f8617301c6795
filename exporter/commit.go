package exporter

import (
	"context"
	"encoding/json"
	"fmt"

	"kiln/cache"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Commit writes img's config and manifest into the store and returns the manifest's descriptor
// (with the image's platform set on it). The config's rootfs is set from the layers. The JSON
// is deterministic: the same image gives the same digests.
func Commit(ctx context.Context, store *cache.Store, img Image) (ocispec.Descriptor, error) {
	if err := ctx.Err(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit image: %w", err)
	}
	cfg := img.Config
	if cfg.OS == "" {
		cfg.OS = "linux"
	}
	if cfg.Architecture == "" {
		cfg.Architecture = "amd64"
	}
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: make([]digest.Digest, 0, len(img.Layers))}
	layers := make([]ocispec.Descriptor, 0, len(img.Layers))
	for i, l := range img.Layers {
		if err := l.Digest.Validate(); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("commit image: layer %d digest: %w", i, err)
		}
		if err := l.DiffID.Validate(); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("commit image: layer %d diff ID: %w", i, err)
		}
		if !store.Has(l.Digest) {
			return ocispec.Descriptor{}, fmt.Errorf("commit image: layer %d %s: %w", i, l.Digest, cache.ErrNotFound)
		}
		mt := l.MediaType
		if mt == "" {
			mt = ocispec.MediaTypeImageLayerGzip
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		layers = append(layers, ocispec.Descriptor{MediaType: mt, Digest: l.Digest, Size: l.Size})
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit image: config: %w", err)
	}
	cdesc, err := store.WriteBlob(ocispec.MediaTypeImageConfig, cb)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit image: config: %w", err)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cdesc,
		Layers:    layers,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit image: manifest: %w", err)
	}
	mdesc, err := store.WriteBlob(ocispec.MediaTypeImageManifest, mb)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit image: manifest: %w", err)
	}
	mdesc.Platform = &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}
	return mdesc, nil
}
