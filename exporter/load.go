package exporter

import (
	"context"
	"encoding/json"
	"fmt"

	"kiln/cache"
	"kiln/snapshot"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultPlatform is the platform kiln builds for and picks from multi-platform images.
func DefaultPlatform() ocispec.Platform { return ocispec.Platform{OS: "linux", Architecture: "amd64"} }

// manifestOrIndex holds what kiln reads of a manifest or an index of either family.
type manifestOrIndex struct {
	MediaType string               `json:"mediaType,omitempty"`
	Config    *ocispec.Descriptor  `json:"config,omitempty"`
	Layers    []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests []ocispec.Descriptor `json:"manifests,omitempty"`
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

// kind tells a manifest from an index: by the descriptor's media type, else the document's own
// mediaType field, else its shape (OCI allows documents without mediaType).
func kind(desc ocispec.Descriptor, m manifestOrIndex) string {
	for _, mt := range []string{desc.MediaType, m.MediaType} {
		if isIndex(mt) || isManifest(mt) {
			return mt
		}
	}
	if m.Manifests != nil {
		return ocispec.MediaTypeImageIndex
	}
	if m.Config != nil {
		return ocispec.MediaTypeImageManifest
	}
	return desc.MediaType
}

// pickPlatform returns the entry of an index for p: an exact match of OS, architecture and (when
// both give one) variant; attestation entries ("unknown/unknown") never match.
func pickPlatform(list []ocispec.Descriptor, p ocispec.Platform) (ocispec.Descriptor, error) {
	var found []string
	for _, d := range list {
		if d.Platform == nil {
			continue
		}
		found = append(found, d.Platform.OS+"/"+d.Platform.Architecture)
		if d.Platform.OS != p.OS || d.Platform.Architecture != p.Architecture {
			continue
		}
		if p.Variant != "" && d.Platform.Variant != "" && p.Variant != d.Platform.Variant {
			continue
		}
		return d, nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("no %s/%s image in the index (it has %v): %w", p.OS, p.Architecture, found, cache.ErrNotFound)
}

// Load reads the image of a manifest (or of the linux/amd64 entry of an index) from the store.
// It returns the image and the descriptor of its manifest (desc itself, or the index's entry).
func Load(ctx context.Context, store *cache.Store, desc ocispec.Descriptor) (Image, ocispec.Descriptor, error) {
	for depth := 0; depth < 4; depth++ {
		if err := ctx.Err(); err != nil {
			return Image{}, desc, err
		}
		b, err := store.ReadBlob(desc.Digest)
		if err != nil {
			return Image{}, desc, fmt.Errorf("load image %s: %w", desc.Digest, err)
		}
		var m manifestOrIndex
		if err := json.Unmarshal(b, &m); err != nil {
			return Image{}, desc, fmt.Errorf("load image %s: %w", desc.Digest, err)
		}
		mt := kind(desc, m)
		desc.MediaType = mt
		desc.Size = int64(len(b))
		switch {
		case isIndex(mt):
			next, err := pickPlatform(m.Manifests, DefaultPlatform())
			if err != nil {
				return Image{}, desc, fmt.Errorf("load image %s: %w", desc.Digest, err)
			}
			desc = next
			continue
		case isManifest(mt):
			img, err := loadManifest(store, desc, m)
			if err != nil {
				return Image{}, desc, fmt.Errorf("load image %s: %w", desc.Digest, err)
			}
			if desc.Platform == nil {
				desc.Platform = &ocispec.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}
			}
			return img, desc, nil
		default:
			return Image{}, desc, fmt.Errorf("load image %s: media type %q is not an image manifest or index", desc.Digest, mt)
		}
	}
	return Image{}, desc, fmt.Errorf("load image %s: indexes nested too deep", desc.Digest)
}

func loadManifest(store *cache.Store, desc ocispec.Descriptor, m manifestOrIndex) (Image, error) {
	if m.Config == nil {
		return Image{}, fmt.Errorf("manifest has no config")
	}
	cb, err := store.ReadBlob(m.Config.Digest)
	if err != nil {
		return Image{}, fmt.Errorf("config: %w", err)
	}
	var img Image
	if err := json.Unmarshal(cb, &img.Config); err != nil {
		return Image{}, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if n, want := len(img.Config.RootFS.DiffIDs), len(m.Layers); n != want {
		return Image{}, fmt.Errorf("config %s lists %d diff IDs for %d layers", m.Config.Digest, n, want)
	}
	for i, l := range m.Layers {
		img.Layers = append(img.Layers, snapshot.Layer{
			Digest:    l.Digest,
			DiffID:    img.Config.RootFS.DiffIDs[i],
			Size:      l.Size,
			MediaType: l.MediaType,
		})
	}
	return img, nil
}

// manifestFiles returns the config and layer descriptors of a stored manifest.
func manifestFiles(store *cache.Store, desc ocispec.Descriptor) (config ocispec.Descriptor, layers []ocispec.Descriptor, err error) {
	b, err := store.ReadBlob(desc.Digest)
	if err != nil {
		return config, nil, err
	}
	var m manifestOrIndex
	if err := json.Unmarshal(b, &m); err != nil {
		return config, nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if m.Config == nil {
		return config, nil, fmt.Errorf("manifest %s has no config", desc.Digest)
	}
	return *m.Config, m.Layers, nil
}
