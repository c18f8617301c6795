// Package builder runs a Dockerfile: it plans the stage graph (only what --target needs), runs
// each stage's steps in order with the step cache, and produces the image config as it evolves.
package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"

	"kiln/builder/fileop"
	"kiln/cache"
	"kiln/exporter"
	"kiln/parser"
	kilnrt "kiln/runtime"
	"kiln/snapshot"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options is one build, as `kiln build` was asked for it.
type Options struct {
	ContextDir string
	Dockerfile string // path of the Dockerfile; "" is ContextDir/Dockerfile
	// DockerfileText, when set, is the Dockerfile itself (-f -); Dockerfile then only names it.
	DockerfileText []byte
	Labels         map[string]string // --label: set on the image built
	NoCacheFilter  []string          // --no-cache-filter: stages whose steps ignore the cache
	// BuildContexts are --build-context name=VALUE: VALUE a directory, docker-image://REF or
	// oci-layout://DIR[:TAG]; name replaces an image, a stage or a COPY --from source of that name.
	BuildContexts map[string]string
	BuildArgs     map[string]string // --build-arg
	Target        string            // --target; "" is the last stage
	NoCache       bool              // --no-cache: run every step, record the results anew
	Pull          bool              // --pull: resolve base images in their registries even when stored
	Platform      string            // --platform: only the native one (linux/amd64) is possible
	Progress      io.Writer         // plain progress lines; nil for none
	Layer         snapshot.CommitOptions

	Secrets  []string // --secret values as given: id=ID[,src=FILE|,env=VAR]
	SSH      []string // --ssh values as given: default|ID[=SOCKET|KEY,...]
	Network  string   // --network: default, host or none; RUN --network overrides per step
	Limits   kilnrt.Limits
	Security kilnrt.Security // --security-opt
	// AllowInsecure is --allow security.insecure: RUN --security=insecure may run.
	AllowInsecure bool
}

// Builder builds images into a state directory.
type Builder struct {
	Store *cache.Store
	Snaps snapshot.Snapshotter
}

// Result is a built image, committed to the content store.
type Result struct {
	Manifest ocispec.Descriptor
	Image    exporter.Image
	Steps    int // steps that make or reuse layers
	Cached   int // of those, taken from the cache
}

// build is the state of one Build call.
type build struct {
	b        *Builder
	opts     Options
	df       *parser.Dockerfile
	ignore   *fileop.Ignore
	global   *argScope // ARGs before the first FROM, with --build-arg applied
	progress *progress
	sem      chan struct{} // bounds the steps that do work at once

	mu     sync.Mutex
	wg     sync.WaitGroup // the stage goroutines: Build returns only when all are done
	stages map[int]*stageFuture
	images map[string]*baseImage // references resolved in this build

	statsMu       sync.Mutex
	steps, cached int
}

type stageFuture struct {
	done chan struct{}
	st   *stageState
	err  error
}

// Build runs the build opts describes and returns the image of its target stage.
func (b *Builder) Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.ContextDir == "" {
		return nil, fmt.Errorf("no build context given")
	}
	if fi, err := os.Stat(opts.ContextDir); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", opts.ContextDir)
	}
	if err := checkPlatform(opts.Platform); err != nil {
		return nil, err
	}
	if opts.Dockerfile == "" {
		opts.Dockerfile = filepath.Join(opts.ContextDir, "Dockerfile")
	}
	data := opts.DockerfileText
	if data == nil {
		var err error
		if data, err = os.ReadFile(opts.Dockerfile); err != nil {
			return nil, fmt.Errorf("read Dockerfile: %w", err)
		}
	}
	df, err := parser.Parse(opts.Dockerfile, data)
	if err != nil {
		return nil, err
	}
	ignore, err := fileop.LoadIgnore(opts.ContextDir, opts.Dockerfile)
	if err != nil {
		return nil, err
	}
	bd := &build{
		b: b, opts: opts, df: df, ignore: ignore,
		progress: newProgress(opts.Progress),
		sem:      make(chan struct{}, goruntime.NumCPU()),
		stages:   map[int]*stageFuture{},
		images:   map[string]*baseImage{},
	}
	bd.global, err = bd.globalArgs()
	if err != nil {
		return nil, err
	}
	target, err := bd.targetStage()
	if err != nil {
		return nil, err
	}
	st, err := bd.stage(ctx, target)
	// A cancelled build still waits for its steps to clean up (kill, unmount, remove) before
	// returning: the process may exit right after.
	bd.wg.Wait()
	if err != nil {
		return nil, err
	}
	for k, v := range opts.Labels {
		if st.img.Config.Labels == nil {
			st.img.Config.Labels = map[string]string{}
		}
		st.img.Config.Labels[k] = v
	}
	img := st.image()
	desc, err := exporter.Commit(ctx, b.Store, img)
	if err != nil {
		return nil, fmt.Errorf("commit image: %w", err)
	}
	return &Result{Manifest: desc, Image: img, Steps: bd.steps, Cached: bd.cached}, nil
}

// targetStage is the index of --target, or of the last stage.
func (bd *build) targetStage() (int, error) {
	if bd.opts.Target == "" {
		return len(bd.df.Stages) - 1, nil
	}
	for i, s := range bd.df.Stages {
		if strings.EqualFold(s.Name, bd.opts.Target) {
			return i, nil
		}
	}
	return 0, &parser.Error{Path: bd.df.Path, Err: fmt.Errorf("target stage %q could not be found", bd.opts.Target)}
}

// stageIndex finds a stage by name or number among the stages before stage `before`.
func (bd *build) stageIndex(ref string, before int) (int, bool) {
	if n, err := strconv.Atoi(ref); err == nil {
		return n, n >= 0 && n < before
	}
	for i := 0; i < before; i++ {
		if bd.df.Stages[i].Name != "" && strings.EqualFold(bd.df.Stages[i].Name, ref) {
			return i, true
		}
	}
	return -1, false
}

// deps lists the earlier stages stage i needs: its base and COPY --from sources.
func (bd *build) deps(i int) []int {
	s := bd.df.Stages[i]
	var out []int
	if base, err := bd.global.expand(bd.lex(), s.BaseName); err == nil {
		if j, ok := bd.stageIndex(base, i); ok {
			out = append(out, j)
		}
	}
	for _, c := range s.Commands {
		var froms []string
		switch c := c.(type) {
		case *instructions.CopyCommand:
			froms = append(froms, c.From)
		case *instructions.RunCommand:
			for _, m := range instructions.GetMounts(c) {
				froms = append(froms, m.From)
			}
		}
		for _, from := range froms {
			if j, ok := bd.stageIndex(from, i); ok && from != "" {
				out = append(out, j)
			}
		}
	}
	return out
}

// stage builds stage i once, however many stages need it; its dependencies start at once, so
// independent stages run concurrently.
func (bd *build) stage(ctx context.Context, i int) (*stageState, error) {
	f := bd.start(ctx, i)
	select {
	case <-f.done:
		return f.st, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (bd *build) start(ctx context.Context, i int) *stageFuture {
	bd.mu.Lock()
	f, ok := bd.stages[i]
	if !ok {
		f = &stageFuture{done: make(chan struct{})}
		bd.stages[i] = f
	}
	bd.mu.Unlock()
	if ok {
		return f
	}
	for _, d := range bd.deps(i) {
		bd.start(ctx, d)
	}
	bd.wg.Add(1)
	go func() {
		defer bd.wg.Done()
		defer close(f.done)
		f.st, f.err = bd.runStage(ctx, i)
	}()
	return f
}

func (bd *build) countStep(cached bool) {
	bd.statsMu.Lock()
	defer bd.statsMu.Unlock()
	bd.steps++
	if cached {
		bd.cached++
	}
}

// lex is a word expander for instruction arguments with the Dockerfile's escape token. A new
// one each time: a shell.Lex keeps state while it works, and stages expand concurrently.
func (bd *build) lex() *shell.Lex { return shell.NewLex(bd.df.Escape) }
