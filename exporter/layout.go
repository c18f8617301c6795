package exporter

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"kiln/cache"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// An OCI image layout, as BuildKit's oci exporter writes it (through containerd's archive
// exporter): oci-layout, blobs/sha256/<hex> for the manifest, config and layers (copied from
// the store as they are, never recompressed), and index.json with one entry per name, each
// annotated with io.containerd.image.name (the full name) and org.opencontainers.image.ref.name
// (the tag alone, which is how umoci and skopeo pick an image in a layout). The docker variant
// adds manifest.json, the file `docker load` reads, with the familiar names as RepoTags.

// layoutEntry is one file or directory of a layout.
type layoutEntry struct {
	name string // slash separated, relative; directories end in "/"
	mode int64
	data []byte             // small files
	blob ocispec.Descriptor // or a blob copied from the store
}

func (e layoutEntry) isDir() bool { return e.name[len(e.name)-1] == '/' }

func (e layoutEntry) size() int64 {
	if e.data != nil {
		return int64(len(e.data))
	}
	return e.blob.Size
}

// layoutEntries lists the files of the layout of the manifest mdesc, sorted by name.
func layoutEntries(store *cache.Store, mdesc ocispec.Descriptor, docker bool, names []string) ([]layoutEntry, error) {
	config, layers, err := manifestFiles(store, mdesc)
	if err != nil {
		return nil, err
	}
	blobs := append([]ocispec.Descriptor{mdesc, config}, layers...)
	var entries []layoutEntry
	seen := map[digest.Digest]bool{}
	for _, b := range blobs {
		if seen[b.Digest] {
			continue
		}
		seen[b.Digest] = true
		if b.Digest.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("blob %s: only sha256 is supported", b.Digest)
		}
		entries = append(entries, layoutEntry{name: blobName(b.Digest), mode: 0o444, blob: b})
	}
	entries = append(entries,
		layoutEntry{name: ocispec.ImageBlobsDir + "/", mode: 0o755},
		layoutEntry{name: ocispec.ImageBlobsDir + "/sha256/", mode: 0o755},
		layoutEntry{name: ocispec.ImageLayoutFile, mode: 0o444, data: []byte(`{"imageLayoutVersion":"` + ocispec.ImageLayoutVersion + `"}`)},
	)
	idx, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: indexEntries(mdesc, names),
	})
	if err != nil {
		return nil, err
	}
	entries = append(entries, layoutEntry{name: ocispec.ImageIndexFile, mode: 0o644, data: idx})
	if docker {
		mj, err := dockerManifest(config, layers, names)
		if err != nil {
			return nil, err
		}
		entries = append(entries, layoutEntry{name: "manifest.json", mode: 0o644, data: mj})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, nil
}

func blobName(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// indexEntries is the manifest's entry in index.json, once per name.
func indexEntries(mdesc ocispec.Descriptor, names []string) []ocispec.Descriptor {
	mdesc.Annotations = nil
	if len(names) == 0 {
		return []ocispec.Descriptor{mdesc}
	}
	out := make([]ocispec.Descriptor, 0, len(names))
	for _, n := range names {
		d := mdesc
		d.Annotations = map[string]string{
			AnnotationImageName:       n,
			ocispec.AnnotationRefName: cache.TagOf(n),
		}
		out = append(out, d)
	}
	return out
}

// dockerManifest is docker's manifest.json for one image.
func dockerManifest(config ocispec.Descriptor, layers []ocispec.Descriptor, names []string) ([]byte, error) {
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	e := entry{Config: blobName(config.Digest), RepoTags: []string{}, Layers: []string{}}
	for _, n := range names {
		e.RepoTags = append(e.RepoTags, cache.FamiliarName(n))
	}
	for _, l := range layers {
		e.Layers = append(e.Layers, blobName(l.Digest))
	}
	return json.Marshal([]entry{e})
}

// copyBlob copies blob d from the store to w, verifying it on the way: a blob changed on disk
// since it was written fails the export instead of shipping.
func copyBlob(store *cache.Store, d ocispec.Descriptor, w io.Writer) error {
	r, err := store.OpenBlob(d.Digest)
	if err != nil {
		return err
	}
	defer r.Close()
	v := d.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(w, v), r)
	if err != nil {
		return fmt.Errorf("copy blob %s: %w", d.Digest, err)
	}
	if n != d.Size {
		return fmt.Errorf("blob %s: %d bytes, manifest says %d: %w", d.Digest, n, d.Size, cache.ErrDigestMismatch)
	}
	if !v.Verified() {
		return fmt.Errorf("blob %s: %w", d.Digest, cache.ErrDigestMismatch)
	}
	return nil
}

var epoch = time.Unix(0, 0)

// writeLayoutTar writes entries as a tar archive.
func writeLayoutTar(ctx context.Context, store *cache.Store, entries []layoutEntry, w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Typeflag: tar.TypeReg, Size: e.size()}
		if e.isDir() {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write %s: %w", e.name, err)
		}
		switch {
		case e.isDir():
		case e.data != nil:
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("write %s: %w", e.name, err)
			}
		default:
			if err := copyBlob(store, e.blob, tw); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish archive: %w", err)
	}
	return nil
}

// writeLayoutDir writes entries into dir, which exists. Blobs already there (same digest) are
// kept; index.json is merged so that the layout keeps its other images: entries of the same
// ref.name are replaced, as a tag is.
func writeLayoutDir(ctx context.Context, store *cache.Store, entries []layoutEntry, dir string) error {
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		switch {
		case e.isDir():
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case e.name == ocispec.ImageIndexFile:
			merged, err := mergeIndex(p, e.data)
			if err != nil {
				return err
			}
			if err := writeFileAtomic(p, nil, func(w io.Writer) error { _, err := w.Write(merged); return err }); err != nil {
				return err
			}
		case e.data != nil:
			if err := writeFileAtomic(p, nil, func(w io.Writer) error { _, err := w.Write(e.data); return err }); err != nil {
				return err
			}
		default:
			if fi, err := os.Stat(p); err == nil && fi.Size() == e.blob.Size {
				continue // content addressed: present means the same bytes
			}
			if err := writeFileAtomic(p, nil, func(w io.Writer) error { return copyBlob(store, e.blob, w) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// mergeIndex adds the entries of the index ours to the index.json at p, if there is one.
func mergeIndex(p string, ours []byte) ([]byte, error) {
	old, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return ours, nil
	}
	if err != nil {
		return nil, err
	}
	var have, add ocispec.Index
	if err := json.Unmarshal(old, &have); err != nil {
		return nil, fmt.Errorf("existing %s: %w", p, err)
	}
	if err := json.Unmarshal(ours, &add); err != nil {
		return nil, err
	}
	replaced := map[string]bool{}
	for _, d := range add.Manifests {
		replaced[d.Annotations[ocispec.AnnotationRefName]] = true
	}
	var keep []ocispec.Descriptor
	for _, d := range have.Manifests {
		if ref := d.Annotations[ocispec.AnnotationRefName]; !replaced[ref] {
			keep = append(keep, d)
		}
	}
	add.Manifests = append(keep, add.Manifests...)
	return json.Marshal(add)
}

// exportLayout writes the oci or docker output: an archive at dest (or stdout), or with
// tar=false a layout directory.
func exportLayout(ctx context.Context, store *cache.Store, mdesc ocispec.Descriptor, out Output, names []string) error {
	entries, err := layoutEntries(store, mdesc, out.Type == TypeDocker, names)
	if err != nil {
		return err
	}
	if out.Tar {
		return writeFileAtomic(out.Dest, out.Stdout, func(w io.Writer) error {
			return writeLayoutTar(ctx, store, entries, w)
		})
	}
	return intoDir(out.Dest, func(dir string, fresh bool) error {
		if !fresh {
			if _, err := os.Stat(filepath.Join(dir, ocispec.ImageLayoutFile)); err != nil {
				return fmt.Errorf("%s exists and is not an OCI image layout", dir)
			}
		}
		return writeLayoutDir(ctx, store, entries, dir)
	})
}

// intoDir runs fill on a directory that becomes dest. When dest does not exist (or is an empty
// directory) fill works in a fresh temporary directory next to dest, renamed to dest when fill
// succeeds; otherwise fill gets dest itself, fresh=false, and must update it safely.
func intoDir(dest string, fill func(dir string, fresh bool) error) error {
	if dest == "" || dest == "-" {
		return fmt.Errorf("a directory output needs dest=DIRECTORY")
	}
	if entries, err := os.ReadDir(dest); err == nil && len(entries) > 0 {
		return fill(dest, false)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("output directory %s: %w", dest, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".kiln-*")
	if err != nil {
		return fmt.Errorf("output directory %s: %w", dest, err)
	}
	if err := fill(tmp, true); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	os.Remove(dest) // an empty directory in the way
	if err := os.Rename(tmp, dest); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("output directory %s: %w", dest, err)
	}
	return nil
}
