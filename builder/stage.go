package builder

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"kiln/exporter"
	"kiln/parser"
	"kiln/snapshot"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	bkparser "github.com/moby/buildkit/frontend/dockerfile/parser"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// historyComment marks history entries as BuildKit marks them, so tools treat ours alike.
const historyComment = "buildkit.dockerfile.v0"

// defaultPath is Docker's PATH for Linux images that set none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// stageState is a stage as it is built: the image config, its layers, and what a RUN sees.
type stageState struct {
	index   int
	name    string
	img     dockerspec.DockerOCIImage
	layers  []snapshot.Layer
	chain   string    // chain ID of layers: the snapshot the next step starts from
	created time.Time // of the newest history entry, reused by config-only steps
	runEnv  env       // the image's Env plus the ARGs in scope: what RUN sees and words expand with
	args    *argScope // ARGs declared in this stage
	argList []instructions.KeyValuePairOptional
	total   int      // instructions in the stage, for progress
	cmdSet  bool     // a CMD was given in this stage (ENTRYPOINT then keeps it)
	onbuild []string // the base's ONBUILD triggers, run before the stage's own instructions
	noCache bool     // --no-cache-filter names this stage
}

// image is the stage's result as an exporter.Image.
func (st *stageState) image() exporter.Image {
	img := st.img
	img.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}}
	for _, l := range st.layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, l.DiffID)
	}
	if !st.created.IsZero() {
		t := st.created.UTC()
		img.Created = &t
	}
	return exporter.Image{Config: img, Layers: slices.Clone(st.layers)}
}

func (st *stageState) addLayer(l *snapshot.Layer, chain string, created time.Time, createdBy string) {
	empty := l == nil
	if !empty {
		st.layers = append(st.layers, *l)
	}
	st.chain = chain
	if created.After(st.created) {
		st.created = created
	}
	st.history(createdBy, empty)
}

func (st *stageState) history(createdBy string, empty bool) {
	t := st.created.UTC()
	h := ocispec.History{CreatedBy: createdBy, Comment: historyComment, EmptyLayer: empty}
	if !st.created.IsZero() {
		h.Created = &t
	}
	st.img.History = append(st.img.History, h)
}

// runStage builds stage i from its base through its last instruction.
func (bd *build) runStage(ctx context.Context, i int) (*stageState, error) {
	s := bd.df.Stages[i]
	st, err := bd.initStage(ctx, i)
	if err != nil {
		return nil, err
	}
	triggers, err := bd.onbuildTriggers(st)
	if err != nil {
		return nil, parser.At(bd.df.Path, s.Location, err)
	}
	n := 1
	for _, cmd := range triggers {
		if isLayerStep(cmd) {
			n++
		}
		label := fmt.Sprintf("[%s%d/%d] ONBUILD %s", bd.stagePrefix(s, i), n, st.total, cmd.(fmt.Stringer).String())
		if err := bd.dispatch(ctx, st, cmd, label); err != nil {
			return nil, parser.At(bd.df.Path, s.Location, fmt.Errorf("ONBUILD %s: %w", cmd.Name(), err))
		}
	}
	for _, cmd := range s.Commands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if isLayerStep(cmd) {
			n++
		}
		label := fmt.Sprintf("[%s%d/%d] %s", bd.stagePrefix(s, i), n, st.total, cmd.(fmt.Stringer).String())
		if err := bd.dispatch(ctx, st, cmd, label); err != nil {
			return nil, parser.At(bd.df.Path, cmd.Location(), err)
		}
	}
	return st, nil
}

// stagePrefix names the stage in progress labels as BuildKit does: nothing when the Dockerfile
// has one stage, else its name or stage-N.
func (bd *build) stagePrefix(s instructions.Stage, i int) string {
	switch {
	case len(bd.df.Stages) == 1:
		return ""
	case s.Name != "":
		return s.Name + " "
	default:
		return fmt.Sprintf("stage-%d ", i)
	}
}

// isLayerStep tells the instructions that BuildKit counts as steps of a stage: those that
// change files.
func isLayerStep(cmd instructions.Command) bool {
	switch cmd.(type) {
	case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
		return true
	}
	return false
}

// initStage starts stage i from its base: scratch, an earlier stage, or an image.
func (bd *build) initStage(ctx context.Context, i int) (*stageState, error) {
	s := bd.df.Stages[i]
	st := &stageState{index: i, name: s.Name, args: &argScope{vals: map[string]*string{}}, total: 1}
	for _, f := range bd.opts.NoCacheFilter {
		if strings.EqualFold(f, s.Name) || f == fmt.Sprint(i) {
			st.noCache = true
		}
	}
	for _, c := range s.Commands {
		if isLayerStep(c) {
			st.total++
		}
	}
	baseName, err := bd.global.expand(bd.lex(), s.BaseName)
	if err != nil {
		return nil, parser.At(bd.df.Path, s.Location, err)
	}
	if s.Platform != "" {
		p, err := bd.global.expand(bd.lex(), s.Platform)
		if err == nil {
			err = checkPlatform(p)
		}
		if err != nil {
			return nil, parser.At(bd.df.Path, s.Location, err)
		}
	}
	label := fmt.Sprintf("[%s1/%d] FROM %s", bd.stagePrefix(s, i), st.total, baseName)
	switch {
	case baseName == "":
		return nil, parser.At(bd.df.Path, s.Location, fmt.Errorf("base name (%s) should not be blank", s.BaseName))
	case strings.EqualFold(baseName, "scratch"):
		bd.scratch(st)
	default:
		nc, err := bd.namedContext(ctx, baseName)
		if err != nil {
			return nil, parser.At(bd.df.Path, s.Location, err)
		}
		if nc != nil && nc.dir != "" {
			bd.scratch(st)
			if err := bd.fromDir(ctx, st, nc.dir, label); err != nil {
				return nil, parser.At(bd.df.Path, s.Location, err)
			}
			break
		}
		if nc != nil {
			bd.fromImage(st, *nc.img)
			bd.progress.cached(label)
			break
		}
		if j, ok := bd.stageIndex(baseName, i); ok {
			base, err := bd.stage(ctx, j)
			if err != nil {
				return nil, err
			}
			st.img = cloneImage(base.img)
			st.img.Config.OnBuild = nil
			// The ONBUILD instructions of a base stage run in the stages built on it.
			for _, c := range bd.df.Stages[j].Commands {
				if ob, ok := c.(*instructions.OnbuildCommand); ok {
					st.onbuild = append(st.onbuild, ob.Expression)
				}
			}
			st.layers = slices.Clone(base.layers)
			st.chain, st.created = base.chain, base.created
			bd.progress.cached(label)
			break
		}
		step := bd.progress.start(label)
		base, err := bd.resolveImage(ctx, baseName)
		if err != nil {
			step.fail(err)
			return nil, parser.At(bd.df.Path, s.Location, err)
		}
		step.done()
		bd.fromImage(st, base)
	}
	if _, ok := env(st.img.Config.Env).Get("PATH"); !ok {
		st.img.Config.Env = append(st.img.Config.Env, "PATH="+defaultPath)
	}
	if strings.EqualFold(baseName, "scratch") {
		bd.progress.cached(label)
	}
	st.runEnv = slices.Clone(env(st.img.Config.Env))
	return st, nil
}

// chainOf is the chain ID of layers.
func chainOf(layers []snapshot.Layer) string {
	chain := ""
	for _, l := range layers {
		chain = snapshot.ChainID(chain, l.DiffID)
	}
	return chain
}

func cloneImage(src dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	img := src
	img.Config.Env = slices.Clone(src.Config.Env)
	img.Config.Cmd = slices.Clone(src.Config.Cmd)
	img.Config.Entrypoint = slices.Clone(src.Config.Entrypoint)
	img.Config.OnBuild = slices.Clone(src.Config.OnBuild)
	img.Config.Shell = slices.Clone(src.Config.Shell)
	img.Config.ExposedPorts = cloneMap(src.Config.ExposedPorts)
	img.Config.Volumes = cloneMap(src.Config.Volumes)
	img.Config.Labels = cloneMap(src.Config.Labels)
	if src.Config.Healthcheck != nil {
		hc := *src.Config.Healthcheck
		hc.Test = slices.Clone(hc.Test)
		img.Config.Healthcheck = &hc
	}
	img.History = slices.Clone(src.History)
	img.RootFS.DiffIDs = slices.Clone(src.RootFS.DiffIDs)
	return img
}

func cloneMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// expandWords expands every word of a command that supports it, with the stage's environment.
func (bd *build) expandCommand(st *stageState, cmd instructions.Command) error {
	if _, isArg := cmd.(*instructions.ArgCommand); isArg {
		return nil // ARG expands its default itself, after build-arg values apply
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		return ex.Expand(func(word string) (string, error) {
			s, _, err := bd.lex().ProcessWord(word, st.runEnv)
			return s, err
		})
	}
	return nil
}

// workdirPath resolves WORKDIR p against the current working directory.
func workdirPath(cur, p string) string {
	if !path.IsAbs(p) {
		if cur == "" {
			cur = "/"
		}
		p = path.Join(cur, p)
	}
	return path.Clean(p)
}

// onbuildTriggers parses the base's ONBUILD triggers into instructions and counts their steps.
func (bd *build) onbuildTriggers(st *stageState) ([]instructions.Command, error) {
	var cmds []instructions.Command
	for _, trigger := range st.onbuild {
		res, err := bkparser.Parse(strings.NewReader(trigger))
		if err != nil {
			return nil, fmt.Errorf("ONBUILD trigger %q: %w", trigger, err)
		}
		if len(res.AST.Children) != 1 {
			return nil, fmt.Errorf("onbuild trigger should be a single expression")
		}
		cmd, err := instructions.ParseCommand(res.AST.Children[0])
		if err != nil {
			return nil, fmt.Errorf("ONBUILD trigger %q: %w", trigger, err)
		}
		if isLayerStep(cmd) {
			st.total++
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// scratch starts st from the empty image, as BuildKit's scratch: WorkingDir / and a PATH.
func (bd *build) scratch(st *stageState) {
	st.img = dockerspec.DockerOCIImage{}
	st.img.OS, st.img.Architecture = "linux", "amd64"
	st.img.Config.WorkingDir = "/"
	st.img.Config.Env = []string{"PATH=" + defaultPath}
}

// fromImage starts st from an image: its config, layers and ONBUILD triggers.
func (bd *build) fromImage(st *stageState, base exporter.Image) {
	st.img = cloneImage(base.Config)
	st.onbuild = st.img.Config.OnBuild
	st.img.Config.OnBuild = nil
	st.layers = slices.Clone(base.Layers)
	st.chain = chainOf(st.layers)
	if st.img.Created != nil {
		st.created = *st.img.Created
	}
	if st.img.OS == "" {
		st.img.OS, st.img.Architecture = "linux", "amd64"
	}
}
