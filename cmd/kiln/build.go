package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"kiln/builder"
	"kiln/exporter"

	"github.com/spf13/cobra"
)

type buildFlags struct {
	file      string
	tags      []string
	buildArgs []string
	target    string
	noCache   bool
	pull      bool
	outputs   []string
	progress  string
	quiet     bool
}

func newBuildCommand(g *globalFlags) *cobra.Command {
	f := &buildFlags{}
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH",
		Short: "Build an image from a Dockerfile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, g, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "name of the Dockerfile (default: PATH/Dockerfile)")
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, `image name and optionally a tag ("name:tag")`)
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "set build-time variables")
	fl.StringVar(&f.target, "target", "", "set the target build stage to build")
	fl.BoolVar(&f.noCache, "no-cache", false, "do not use cache when building the image")
	fl.BoolVar(&f.pull, "pull", false, "always attempt to pull all referenced images")
	fl.StringArrayVarP(&f.outputs, "output", "o", nil, `output destination (format: "type=local,dest=path")`)
	fl.StringVar(&f.progress, "progress", "auto", `set type of progress output ("auto", "plain", "quiet")`)
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "suppress the build output and print image digest on success")
	return cmd
}

func runBuild(cmd *cobra.Command, g *globalFlags, f *buildFlags, contextDir string) error {
	ctx := cmd.Context()
	args := map[string]string{}
	for _, a := range f.buildArgs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			// --build-arg NAME takes its value from the environment, and is skipped when unset.
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = ev
		}
		args[k] = v
	}
	var outputs []exporter.Output
	for _, o := range f.outputs {
		out, err := exporter.ParseOutput(o)
		if err != nil {
			return err
		}
		outputs = append(outputs, out)
	}
	var progress io.Writer = os.Stderr
	switch f.progress {
	case "auto", "plain", "tty":
	case "quiet":
		progress = nil
	default:
		return fmt.Errorf("invalid --progress %q: use auto, plain or quiet", f.progress)
	}
	if f.quiet {
		progress = nil
	}
	store, snaps, err := g.open()
	if err != nil {
		return err
	}
	defer store.Close()
	unlock, err := store.Lock(ctx, false)
	if err != nil {
		return err
	}
	defer unlock()
	b := &builder.Builder{Store: store, Snaps: snaps}
	res, err := b.Build(ctx, builder.Options{
		ContextDir: contextDir,
		Dockerfile: f.file,
		BuildArgs:  args,
		Target:     f.target,
		NoCache:    f.noCache,
		Pull:       f.pull,
		Progress:   progress,
	})
	if err != nil {
		return err
	}
	for _, t := range f.tags {
		if err := store.Tag(t, res.Manifest); err != nil {
			return fmt.Errorf("tag %s: %w", t, err)
		}
	}
	for _, out := range outputs {
		if err := exporter.Export(ctx, store, snaps, res.Manifest, out, f.tags); err != nil {
			return fmt.Errorf("export %s: %w", out.Type, err)
		}
	}
	if f.quiet {
		fmt.Println(res.Manifest.Digest)
	} else if progress != nil {
		fmt.Fprintf(progress, "writing image %s (%d of %d steps cached)\n", res.Manifest.Digest, res.Cached, res.Steps)
		for _, t := range f.tags {
			fmt.Fprintf(progress, "naming to %s\n", t)
		}
	}
	return nil
}
