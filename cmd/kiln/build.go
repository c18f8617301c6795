package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"kiln/builder"
	"kiln/exporter"
	"kiln/parser"
	kilnrt "kiln/runtime"
	"kiln/snapshot"

	"github.com/docker/go-units"

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

	secrets     []string
	ssh         []string
	network     string
	memory      string
	cpus        float64
	cpuShares   uint64
	pidsLimit   int64
	securityOpt []string
	allow       []string

	labels        []string
	platform      string
	noCacheFilter []string
	buildContexts []string
	check         bool
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
	fl.StringArrayVar(&f.secrets, "secret", nil, `secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or "id=x,env=VAR")`)
	fl.StringArrayVar(&f.ssh, "ssh", nil, `SSH agent socket or keys to expose to the build (format: "default|<id>[=<socket>|<key>[,<key>]]")`)
	fl.StringVar(&f.network, "network", "default", `set the networking mode for the RUN instructions during build ("default", "host", "none")`)
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit of each RUN step (e.g. 512m, 2g)")
	fl.Float64Var(&f.cpus, "cpus", 0, "number of CPUs each RUN step may use")
	fl.Uint64VarP(&f.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight) of each RUN step")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "limit on the number of processes of each RUN step")
	fl.StringArrayVar(&f.securityOpt, "security-opt", nil, `security options ("no-new-privileges", "seccomp=unconfined")`)
	fl.StringArrayVar(&f.allow, "allow", nil, `allow extra privileged entitlement ("security.insecure")`)
	fl.StringArrayVar(&f.labels, "label", nil, "set metadata for an image")
	fl.StringVar(&f.platform, "platform", "", "set target platform for build (only the native linux/amd64)")
	fl.StringSliceVar(&f.noCacheFilter, "no-cache-filter", nil, "do not cache specified stages")
	fl.BoolVar(&f.check, "check", false, "run the Dockerfile checks only, and fail when one finds a problem")
	fl.StringArrayVar(&f.buildContexts, "build-context", nil, `additional build contexts (e.g., name=path, name=docker-image://ref, name=oci-layout://dir[:tag])`)
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
	limits, security, allowInsecure, err := f.sandboxOptions()
	if err != nil {
		return err
	}
	labels := map[string]string{}
	for _, l := range f.labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	contexts := map[string]string{}
	for _, c := range f.buildContexts {
		k, v, ok := strings.Cut(c, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("invalid --build-context %q: use name=value", c)
		}
		contexts[k] = v
	}
	store, snaps, err := g.open()
	if err != nil {
		return err
	}
	defer store.Close()
	// "-" as the context is a tar archive, or a lone Dockerfile, on standard input; -f - is the
	// Dockerfile on standard input.
	var dockerfileText []byte
	if contextDir == "-" || f.file == "-" {
		dir, text, err := readStdin(store.TmpDir(), contextDir == "-", f.file == "-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if contextDir == "-" {
			contextDir = dir
		}
		if text != nil {
			dockerfileText = text
			f.file = filepath.Join(contextDir, "Dockerfile")
		}
	}
	// What a kiln killed with -9 left (cgroups, mounted work snapshots) is recovered now; it
	// costs well under a millisecond. Deleting files waits until after the build.
	if err := kilnrt.CleanupStale(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "warning: %v\n", err)
	}
	if err := snapshot.Recover(ctx, store.SnapshotsDir()); err != nil {
		fmt.Fprintf(os.Stderr, "warning: %v\n", err)
	}
	defer func() {
		if err := snapshot.Cleanup(context.WithoutCancel(ctx), store.SnapshotsDir()); err != nil {
			fmt.Fprintf(os.Stderr, "warning: %v\n", err)
		}
	}()
	unlock, err := store.Lock(ctx, false)
	if err != nil {
		return err
	}
	defer unlock()
	b := &builder.Builder{Store: store, Snaps: snaps}
	opts := builder.Options{
		ContextDir: contextDir,
		Dockerfile: f.file,
		BuildArgs:  args,
		Target:     f.target,
		NoCache:    f.noCache,
		Pull:       f.pull,
		Progress:   progress,

		DockerfileText: dockerfileText,
		Labels:         labels,
		Platform:       f.platform,
		NoCacheFilter:  f.noCacheFilter,
		BuildContexts:  contexts,
		Secrets:        f.secrets,
		SSH:            f.ssh,
		Network:        f.network,
		Limits:         limits,
		Security:       security,
		AllowInsecure:  allowInsecure,
	}
	if f.check {
		res, err := runChecks(ctx, b, opts, os.Stdout, true)
		if err != nil {
			return err
		}
		if res.Failed() {
			return errChecksFailed{len(res.Warnings())}
		}
		return nil
	}
	// The checks run first: with `# check=error=true` their findings stop the build before any
	// step runs, as BuildKit's do; otherwise they are printed after it.
	checks, err := runChecks(ctx, b, opts, nil, false)
	var lintErr *parser.LintViolationError
	if err == nil && checks.Err != nil && errors.As(checks.Err, &lintErr) {
		_ = checks.Print(os.Stderr)
		return checks.Err
	}
	res, err := b.Build(ctx, opts)
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
	if progress != nil && checks != nil {
		// The checks' findings follow a build, as BuildKit prints them.
		printCheckSummary(progress, checks)
	}
	return nil
}

// sandboxOptions turns the flags about RUN steps' sandbox into the runtime's terms.
func (f *buildFlags) sandboxOptions() (kilnrt.Limits, kilnrt.Security, bool, error) {
	var lim kilnrt.Limits
	var sec kilnrt.Security
	switch f.network {
	case "default", "host", "none":
	default:
		return lim, sec, false, fmt.Errorf("invalid --network %q: use default, host or none", f.network)
	}
	if f.memory != "" {
		n, err := units.RAMInBytes(f.memory)
		if err != nil || n <= 0 {
			return lim, sec, false, fmt.Errorf("invalid --memory %q", f.memory)
		}
		lim.MemoryBytes = n
	}
	if f.cpus < 0 || f.pidsLimit < 0 {
		return lim, sec, false, fmt.Errorf("--cpus and --pids-limit must not be negative")
	}
	lim.CPUs, lim.CPUShares, lim.Pids = f.cpus, f.cpuShares, f.pidsLimit
	for _, o := range f.securityOpt {
		switch o {
		case "no-new-privileges", "no-new-privileges=true", "no-new-privileges:true":
			sec.NoNewPrivileges = true
		case "seccomp=unconfined", "seccomp:unconfined":
			sec.NoSeccomp = true
		default:
			return lim, sec, false, fmt.Errorf("invalid --security-opt %q: use no-new-privileges or seccomp=unconfined", o)
		}
	}
	insecure := false
	for _, a := range f.allow {
		switch a {
		case "security.insecure":
			insecure = true
		case "network.host":
		default:
			return lim, sec, false, fmt.Errorf("invalid --allow %q: use security.insecure or network.host", a)
		}
	}
	return lim, sec, insecure, nil
}
