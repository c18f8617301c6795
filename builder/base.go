package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"kiln/cache"
	"kiln/exporter"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// baseImage is an image a build starts from or copies from.
type baseImage struct {
	img  exporter.Image
	once chan struct{}
	err  error
}

// resolveImage finds ref in the local store, or pulls it from its registry (and tags it in the
// store, as `docker pull` would) when the store lacks it or --pull was given. Each reference is
// resolved once per build.
func (bd *build) resolveImage(ctx context.Context, ref string) (exporter.Image, error) {
	bd.mu.Lock()
	bi, ok := bd.images[ref]
	if !ok {
		bi = &baseImage{once: make(chan struct{})}
		bd.images[ref] = bi
	}
	bd.mu.Unlock()
	if !ok {
		bi.img, bi.err = bd.loadImage(ctx, ref)
		close(bi.once)
	}
	select {
	case <-bi.once:
	case <-ctx.Done():
		return exporter.Image{}, ctx.Err()
	}
	return bi.img, bi.err
}

func (bd *build) loadImage(ctx context.Context, ref string) (exporter.Image, error) {
	img, _, err := bd.b.LoadImage(ctx, ref, bd.opts.Pull)
	return img, err
}

// LoadImage finds ref in the local store, or pulls it from its registry (and tags it in the
// store, as `docker pull` would) when the store lacks it or pull is set. It returns the image and
// its manifest's descriptor.
func (b *Builder) LoadImage(ctx context.Context, ref string, pull bool) (exporter.Image, ocispec.Descriptor, error) {
	store := b.Store
	if !pull {
		desc, err := store.Resolve(ref)
		if err == nil {
			img, manifest, err := exporter.Load(ctx, store, desc)
			if err != nil {
				return exporter.Image{}, ocispec.Descriptor{}, fmt.Errorf("load image %s: %w", ref, err)
			}
			return img, manifest, nil
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return exporter.Image{}, ocispec.Descriptor{}, fmt.Errorf("resolve image %s: %w", ref, err)
		}
	}
	desc, err := exporter.Pull(ctx, store, ref)
	if err != nil {
		return exporter.Image{}, ocispec.Descriptor{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, manifest, err := exporter.Load(ctx, store, desc)
	if err != nil {
		return exporter.Image{}, ocispec.Descriptor{}, fmt.Errorf("load image %s: %w", ref, err)
	}
	if err := store.Tag(ref, manifest); err != nil {
		return exporter.Image{}, ocispec.Descriptor{}, fmt.Errorf("tag %s: %w", ref, err)
	}
	return img, manifest, nil
}

// ImageConfig resolves ref as a build does and returns its manifest digest and config JSON,
// for the Dockerfile checks.
func (b *Builder) ImageConfig(ctx context.Context, ref string) (digest.Digest, []byte, error) {
	img, manifest, err := b.LoadImage(ctx, ref, false)
	if err != nil {
		return "", nil, err
	}
	cfg, err := json.Marshal(img.Config)
	return manifest.Digest, cfg, err
}
