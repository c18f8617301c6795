package main

import (
	"fmt"
	"os"

	"kiln/cache"
	"kiln/snapshot"

	"github.com/spf13/cobra"
)

// globalFlags are the flags every command takes.
type globalFlags struct {
	root        string
	snapshotter string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	cmd := &cobra.Command{
		Use:           "kiln",
		Short:         "Build container images from Dockerfiles, without a daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defRoot := os.Getenv("KILN_ROOT")
	if defRoot == "" {
		defRoot = "/var/lib/kiln"
	}
	defSnap := os.Getenv("KILN_SNAPSHOTTER")
	if defSnap == "" {
		defSnap = "auto"
	}
	cmd.PersistentFlags().StringVar(&g.root, "root", defRoot, "state directory (env KILN_ROOT)")
	cmd.PersistentFlags().StringVar(&g.snapshotter, "snapshotter", defSnap, "snapshotter: overlay, copy or auto (env KILN_SNAPSHOTTER)")
	cmd.AddCommand(newBuildCommand(g), newImagesCommand(g), newRmiCommand(g), newInspectCommand(g),
		newPruneCommand(g), newRunCommand(g))
	return cmd
}

// open opens the state directory and its snapshotter.
func (g *globalFlags) open() (*cache.Store, snapshot.Snapshotter, error) {
	store, err := cache.Open(g.root)
	if err != nil {
		return nil, nil, fmt.Errorf("open state directory %s: %w", g.root, err)
	}
	snaps, err := snapshot.New(store.SnapshotsDir(), g.snapshotter)
	if err != nil {
		return nil, nil, fmt.Errorf("open snapshots: %w", err)
	}
	return store, snaps, nil
}
