package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"kiln/cache"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportLayout copies an image from the OCI image layout at dir into the store, as
// `--build-context name=oci-layout://DIR[:TAG|@DIGEST]` reads it, and returns the descriptor of
// its manifest (or index). ref is "", a tag, or "@sha256:..."; "" takes the layout's only image.
func ImportLayout(ctx context.Context, store *cache.Store, dir, ref string) (ocispec.Descriptor, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(raw, &index); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("oci layout %s: index.json: %w", dir, err)
	}
	var found []ocispec.Descriptor
	for _, d := range index.Manifests {
		switch {
		case strings.HasPrefix(ref, "@"):
			if d.Digest.String() == ref[1:] {
				found = append(found, d)
			}
		case ref != "":
			if d.Annotations[ocispec.AnnotationRefName] == ref {
				found = append(found, d)
			}
		default:
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return ocispec.Descriptor{}, fmt.Errorf("oci layout %s: %d images match %q, want exactly one", dir, len(found), ref)
	}
	if err := importBlobs(ctx, store, dir, found[0], 0); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	return found[0], nil
}

// importBlobs copies desc and everything it references (manifests of an index, a manifest's
// config and layers) from the layout into the store, verifying each digest.
func importBlobs(ctx context.Context, store *cache.Store, dir string, desc ocispec.Descriptor, depth int) error {
	if depth > 4 {
		return fmt.Errorf("index nesting too deep at %s", desc.Digest)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := importBlob(store, dir, desc.Digest); err != nil {
		return err
	}
	if !isIndex(desc.MediaType) && !isManifest(desc.MediaType) {
		return nil
	}
	raw, err := store.ReadBlob(desc.Digest)
	if err != nil {
		return err
	}
	var m manifestOrIndex
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: %w", desc.Digest, err)
	}
	children := append([]ocispec.Descriptor{}, m.Manifests...)
	if m.Config != nil {
		children = append(children, *m.Config)
	}
	children = append(children, m.Layers...)
	for _, c := range children {
		if isIndex(c.MediaType) || isManifest(c.MediaType) {
			if c.Platform != nil && (c.Platform.OS != DefaultPlatform().OS || c.Platform.Architecture != DefaultPlatform().Architecture) {
				continue // other platforms of an index are not needed
			}
			if err := importBlobs(ctx, store, dir, c, depth+1); err != nil {
				return err
			}
			continue
		}
		if err := importBlob(store, dir, c.Digest); err != nil {
			return err
		}
	}
	return nil
}

func importBlob(store *cache.Store, dir string, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if store.Has(d) {
		return nil
	}
	f, err := os.Open(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()))
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := store.NewWriter()
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("copy blob %s: %w", d, err)
	}
	_, _, err = w.Commit(d)
	return err
}
