package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"kiln/cache"
	"kiln/exporter"
	"kiln/snapshot"

	"github.com/docker/go-units"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func newImagesCommand(g *globalFlags) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List images in the local store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, _, err := g.open()
			if err != nil {
				return err
			}
			defer store.Close()
			tags, err := store.Tags()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
			if !quiet {
				fmt.Fprintln(w, "REPOSITORY\tTAG\tDIGEST\tCREATED\tSIZE")
			}
			for _, d := range tags {
				name := d.Annotations[ocispec.AnnotationRefName]
				if quiet {
					fmt.Fprintln(w, name)
					continue
				}
				repo, tag := splitName(name)
				created, size := "-", "-"
				if img, _, err := exporter.Load(cmd.Context(), store, d); err == nil {
					if img.Config.Created != nil {
						created = units.HumanDuration(time.Since(*img.Config.Created)) + " ago"
					}
					var n int64
					for _, l := range img.Layers {
						n += l.Size
					}
					size = units.HumanSize(float64(n))
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", repo, tag, d.Digest.Encoded()[:12], created, size)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show names")
	return cmd
}

// splitName splits a stored name into repository and tag, dropping Docker Hub's implicit parts
// as `docker images` does.
func splitName(name string) (string, string) {
	repo, tag := name, "<none>"
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo, tag = name[:i], name[i+1:]
	}
	repo = strings.TrimPrefix(repo, "docker.io/")
	repo = strings.TrimPrefix(repo, "library/")
	return repo, tag
}

func newRmiCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rmi IMAGE [IMAGE...]",
		Short: "Remove image names from the local store (kiln prune frees their space)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, _, err := g.open()
			if err != nil {
				return err
			}
			defer store.Close()
			for _, a := range args {
				if err := store.Untag(a); err != nil {
					return fmt.Errorf("remove %s: %w", a, err)
				}
				fmt.Printf("Untagged: %s\n", a)
			}
			return nil
		},
	}
}

func newInspectCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show an image's manifest and config as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, _, err := g.open()
			if err != nil {
				return err
			}
			defer store.Close()
			img, mdesc, err := loadStored(cmd.Context(), store, args[0])
			if err != nil {
				return err
			}
			raw, err := store.ReadBlob(mdesc.Digest)
			if err != nil {
				return err
			}
			out := struct {
				Name     string          `json:"name"`
				Digest   string          `json:"digest"`
				Manifest json.RawMessage `json:"manifest"`
				Config   any             `json:"config"`
			}{args[0], mdesc.Digest.String(), raw, img.Config}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
}

func newPruneCommand(g *globalFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove build cache and blobs no image name needs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, snaps, err := g.open()
			if err != nil {
				return err
			}
			defer store.Close()
			unlock, err := store.Lock(ctx, true)
			if err != nil {
				return err
			}
			defer unlock()
			rep, err := store.Prune(ctx, all)
			if err != nil {
				return err
			}
			removed, err := pruneSnapshots(ctx, snaps, rep.Keep)
			if err != nil {
				return err
			}
			if err := snapshot.Cleanup(ctx, store.SnapshotsDir()); err != nil {
				return err
			}
			fmt.Printf("Deleted %d blobs, %d cache records, %d snapshots. Total reclaimed space: %s\n",
				rep.Blobs, rep.Records, removed, units.HumanSize(float64(rep.Reclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all build cache, not just unused")
	return cmd
}

// pruneSnapshots removes the snapshots that no kept snapshot stands on, children before parents.
func pruneSnapshots(ctx context.Context, snaps snapshot.Snapshotter, keep map[string]bool) (int, error) {
	infos, err := snaps.List(ctx)
	if err != nil {
		return 0, err
	}
	parent := map[string]string{}
	for _, in := range infos {
		parent[in.ChainID] = in.Parent
	}
	needed := map[string]bool{}
	for c := range keep {
		for ; c != "" && !needed[c]; c = parent[c] {
			needed[c] = true
		}
	}
	children := map[string]int{}
	for _, in := range infos {
		if in.Parent != "" {
			children[in.Parent]++
		}
	}
	removed := 0
	for progress := true; progress; {
		progress = false
		for _, in := range infos {
			c := in.ChainID
			if needed[c] || children[c] > 0 || parent[c] == "-" {
				continue
			}
			if err := snaps.Remove(ctx, c); err != nil {
				return removed, fmt.Errorf("remove snapshot %s: %w", c, err)
			}
			if in.Parent != "" {
				children[in.Parent]--
			}
			parent[c] = "-" // removed
			removed++
			progress = true
		}
	}
	return removed, nil
}

// loadStored loads the image a name (or digest) of the local store names.
func loadStored(ctx context.Context, store *cache.Store, ref string) (exporter.Image, ocispec.Descriptor, error) {
	desc, err := store.Resolve(ref)
	if err != nil {
		return exporter.Image{}, ocispec.Descriptor{}, fmt.Errorf("image %s: %w", ref, err)
	}
	img, mdesc, err := exporter.Load(ctx, store, desc)
	if err != nil {
		return exporter.Image{}, ocispec.Descriptor{}, fmt.Errorf("image %s: %w", ref, err)
	}
	return img, mdesc, nil
}
