package builder

import (
	"context"
	"errors"
	"fmt"

	"kiln/cache"
	"kiln/exporter"
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
	store := bd.b.Store
	if !bd.opts.Pull {
		desc, err := store.Resolve(ref)
		if err == nil {
			img, _, err := exporter.Load(ctx, store, desc)
			if err != nil {
				return exporter.Image{}, fmt.Errorf("load image %s: %w", ref, err)
			}
			return img, nil
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return exporter.Image{}, fmt.Errorf("resolve image %s: %w", ref, err)
		}
	}
	desc, err := exporter.Pull(ctx, store, ref)
	if err != nil {
		return exporter.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, manifest, err := exporter.Load(ctx, store, desc)
	if err != nil {
		return exporter.Image{}, fmt.Errorf("load image %s: %w", ref, err)
	}
	if err := store.Tag(ref, manifest); err != nil {
		return exporter.Image{}, fmt.Errorf("tag %s: %w", ref, err)
	}
	return img, nil
}
