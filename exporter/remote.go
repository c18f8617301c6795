package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"kiln/cache"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pullParallel bounds the blobs fetched at once.
const pullParallel = 4

// ParseRemoteRef parses an image reference for a registry: plain HTTP for localhost and
// 127.0.0.0/8 (and ::1), HTTPS everywhere else.
func ParseRemoteRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if isLoopback(r.Context().RegistryStr()) {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("image reference %q: %w", ref, err)
		}
	}
	return r, nil
}

func isLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("kiln"),
	}
}

func toOCI(d v1.Descriptor) ocispec.Descriptor {
	out := ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size}
	if d.Platform != nil {
		out.Platform = &ocispec.Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant, OSVersion: d.Platform.OSVersion}
	}
	return out
}

// Pull fetches ref's linux/amd64 image from its registry into the store (skipping blobs the store
// has) and returns its manifest's descriptor. HTTPS by default, plain HTTP for 127.0.0.0/8 and
// localhost. Credentials come from the docker config (~/.docker/config.json), else anonymous.
// The image is not tagged in the store; an index, when ref names one, is stored too.
func Pull(ctx context.Context, store *cache.Store, ref string) (ocispec.Descriptor, error) {
	r, err := ParseRemoteRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pull: %w", err)
	}
	// A digest reference whose image is whole in the store needs no registry.
	if dr, ok := r.(name.Digest); ok {
		if desc, ok := storedImage(ctx, store, digest.Digest(dr.DigestStr())); ok {
			return desc, nil
		}
	}
	opts := remoteOptions(ctx)
	got, err := remote.Get(r, opts...)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	desc := toOCI(got.Descriptor)
	body := got.Manifest
	if isIndex(desc.MediaType) {
		if err := storeDocument(store, desc, body); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("pull %s: %w", ref, err)
		}
		var idx manifestOrIndex
		if err := json.Unmarshal(body, &idx); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("pull %s: index: %w", ref, err)
		}
		if desc, err = pickPlatform(idx.Manifests, DefaultPlatform()); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("pull %s: %w", ref, err)
		}
		got, err = remote.Get(r.Context().Digest(desc.Digest.String()), opts...)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("pull %s: manifest %s: %w", ref, desc.Digest, err)
		}
		body = got.Manifest
		desc.MediaType = string(got.MediaType)
	}
	if !isManifest(desc.MediaType) {
		return ocispec.Descriptor{}, fmt.Errorf("pull %s: unsupported manifest media type %q", ref, desc.MediaType)
	}
	var m manifestOrIndex
	if err := json.Unmarshal(body, &m); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pull %s: manifest: %w", ref, err)
	}
	if m.Config == nil {
		return ocispec.Descriptor{}, fmt.Errorf("pull %s: manifest has no config", ref)
	}
	if err := fetchBlobs(ctx, store, r.Context(), append([]ocispec.Descriptor{*m.Config}, m.Layers...), opts); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	// The manifest last: a stored manifest means its blobs are there.
	if err := storeDocument(store, desc, body); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	_, desc, err = Load(ctx, store, desc) // checks the config against the layers, sets the platform
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	return desc, nil
}

// storeDocument stores a manifest or index body fetched for desc, refusing one that does not
// hash to desc's digest.
func storeDocument(store *cache.Store, desc ocispec.Descriptor, body []byte) error {
	if got := digest.FromBytes(body); got != desc.Digest {
		return fmt.Errorf("manifest %s: registry sent content hashing to %s: %w", desc.Digest, got, cache.ErrDigestMismatch)
	}
	_, err := store.WriteBlob(desc.MediaType, body)
	return err
}

// storedImage returns the manifest descriptor of the image d when it and all its blobs are in
// the store and verify.
func storedImage(ctx context.Context, store *cache.Store, d digest.Digest) (ocispec.Descriptor, bool) {
	if !store.Has(d) {
		return ocispec.Descriptor{}, false
	}
	img, desc, err := Load(ctx, store, ocispec.Descriptor{Digest: d})
	if err != nil {
		return ocispec.Descriptor{}, false
	}
	for _, l := range img.Layers {
		if store.Verify(l.Digest) != nil {
			return ocispec.Descriptor{}, false
		}
	}
	return desc, true
}

// fetchBlobs copies the blobs the store lacks (or holds corrupt) from repo, a few at a time,
// verifying each against its digest as it is written.
func fetchBlobs(ctx context.Context, store *cache.Store, repo name.Repository, blobs []ocispec.Descriptor, opts []remote.Option) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, pullParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	seen := map[digest.Digest]bool{}
	for _, b := range blobs {
		if seen[b.Digest] {
			continue
		}
		seen[b.Digest] = true
		if store.Verify(b.Digest) == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				return
			}
			if err := fetchBlob(store, repo, b, opts); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return ctx.Err()
}

func fetchBlob(store *cache.Store, repo name.Repository, b ocispec.Descriptor, opts []remote.Option) error {
	l, err := remote.Layer(repo.Digest(b.Digest.String()), opts...)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	defer rc.Close()
	w, err := store.NewWriter()
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	if _, n, err := w.Commit(b.Digest); err != nil {
		return err
	} else if b.Size > 0 && n != b.Size {
		return fmt.Errorf("blob %s: %d bytes, manifest says %d", b.Digest, n, b.Size)
	}
	return nil
}

// Push uploads the image of the stored manifest mdesc to the registry as ref (a tag), skipping
// blobs the registry has.
func Push(ctx context.Context, store *cache.Store, mdesc ocispec.Descriptor, ref string) error {
	r, err := ParseRemoteRef(ref)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	_, mdesc, err = Load(ctx, store, mdesc)
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	img, err := partial.CompressedToImage(storeImage{store: store, desc: mdesc})
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	if err := remote.Write(r, img, remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// storeImage presents a stored manifest to go-containerregistry as an image of compressed
// layers, so pushes send the stored blobs as they are.
type storeImage struct {
	store *cache.Store
	desc  ocispec.Descriptor
}

func (i storeImage) RawManifest() ([]byte, error) { return i.store.ReadBlob(i.desc.Digest) }

func (i storeImage) MediaType() (types.MediaType, error) {
	return types.MediaType(i.desc.MediaType), nil
}

func (i storeImage) RawConfigFile() ([]byte, error) {
	config, _, err := manifestFiles(i.store, i.desc)
	if err != nil {
		return nil, err
	}
	return i.store.ReadBlob(config.Digest)
}

func (i storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	config, layers, err := manifestFiles(i.store, i.desc)
	if err != nil {
		return nil, err
	}
	for _, d := range append([]ocispec.Descriptor{config}, layers...) {
		if d.Digest.String() == h.String() {
			return storeBlob{store: i.store, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("blob %s is not in manifest %s: %w", h, i.desc.Digest, cache.ErrNotFound)
}

type storeBlob struct {
	store *cache.Store
	desc  ocispec.Descriptor
}

func (b storeBlob) Digest() (v1.Hash, error) { return v1.NewHash(b.desc.Digest.String()) }
func (b storeBlob) Size() (int64, error)     { return b.desc.Size, nil }
func (b storeBlob) MediaType() (types.MediaType, error) {
	return types.MediaType(b.desc.MediaType), nil
}
func (b storeBlob) Compressed() (io.ReadCloser, error) {
	return b.store.OpenBlob(b.desc.Digest)
}
