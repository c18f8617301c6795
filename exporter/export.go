package exporter

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"kiln/cache"
	"kiln/snapshot"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Export writes the image of manifest to out; names are the image's tags (-t), recorded as
// ref names in archives. A file or directory at dest appears whole or not at all: it is
// written next to dest under a temporary name and renamed.
//
// snaps may be nil: the local and tar outputs apply the layer blobs themselves, so they give
// the same tree whatever snapshots the state directory still holds.
func Export(ctx context.Context, store *cache.Store, snaps snapshot.Snapshotter, manifest ocispec.Descriptor, out Output, names []string) error {
	full := make([]string, 0, len(names))
	for _, n := range names {
		f, err := cache.NormalizeName(n)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		full = append(full, f)
	}
	if n := out.Attrs["name"]; n != "" && len(full) == 0 {
		for _, part := range splitNames(n) {
			f, err := cache.NormalizeName(part)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			full = append(full, f)
		}
	}
	img, mdesc, err := Load(ctx, store, manifest)
	if err != nil {
		return fmt.Errorf("export %s: %w", out.Type, err)
	}
	switch out.Type {
	case TypeOCI, TypeDocker:
		err = exportLayout(ctx, store, mdesc, out, full)
	case TypeLocal:
		err = exportLocal(ctx, store, img, out.Dest)
	case TypeTar:
		err = exportRootfsTar(ctx, store, img, out)
	case TypeImage:
		err = exportImage(ctx, store, mdesc, out, full)
	default:
		err = fmt.Errorf("unknown output type %q; valid types: oci, docker, local, tar, image", out.Type)
	}
	if err != nil {
		return fmt.Errorf("export %s: %w", out.Type, err)
	}
	return nil
}

func splitNames(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// writeFileAtomic streams write into a temporary file next to dest and renames it to dest when
// write succeeds; on failure nothing is left. dest "-" streams to stdout instead.
func writeFileAtomic(dest string, stdout io.Writer, write func(w io.Writer) error) error {
	if dest == "-" {
		if stdout == nil {
			stdout = os.Stdout
		}
		return write(stdout)
	}
	dir := filepath.Dir(dest)
	f, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".kiln-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", dest, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", dest, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	return nil
}

// exportImage tags the image in the store under names, and pushes it when push=true.
func exportImage(ctx context.Context, store *cache.Store, mdesc ocispec.Descriptor, out Output, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("type=image needs a name: -t NAME or name=NAME")
	}
	for _, n := range names {
		if err := store.Tag(n, mdesc); err != nil {
			return err
		}
	}
	push, err := parseBool(out.Attrs["push"])
	if err != nil {
		return fmt.Errorf("push=%w", err)
	}
	if push {
		for _, n := range names {
			if err := Push(ctx, store, mdesc, n); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseBool(s string) (bool, error) {
	switch s {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}
