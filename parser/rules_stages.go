package parser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	bkparser "github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/util/suggest"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/patternmatcher"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// This file walks the stages as BuildKit's dockerfile2llb does when it lints (resolving base
// images, expanding words, tracking each stage's environment), in the same order, so that the
// rules BuildKit checks during that walk fire with the same messages, on the same lines, in the
// same order. It never builds anything.

const (
	scratchImage   = "scratch"
	defaultPathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// nonEnvArgs are build args BuildKit never puts in the environment.
var nonEnvArgs = map[string]struct{}{
	"BUILDKIT_SBOM_SCAN_CONTEXT": {},
	"BUILDKIT_SBOM_SCAN_STAGE":   {},
}

var reservedStageNames = map[string]struct{}{"context": {}, "scratch": {}}

// usedOnce remembers where an instruction that counts only once per stage was last seen.
type usedOnce struct {
	loc []bkparser.Range
	set bool
}

type checkCmd struct {
	instructions.Command
	sources []*checkStage
}

// checkStage is one stage (or an image named by COPY --from / RUN --mount from=) during the walk.
type checkStage struct {
	stage        instructions.Stage
	name         string // stage name, or stage-N
	base         *checkStage
	deps         map[*checkStage]instructions.Command
	depOrder     []*checkStage
	commands     []checkCmd
	unregistered bool
	resolved     bool
	dispatched   bool
	onBuildInit  bool
	platform     *ocispec.Platform
	img          dockerspec.DockerOCIImage
	env          *envList
	buildArgs    []instructions.KeyValuePairOptional
	workdirSet   bool
	cmd          usedOnce
	entrypoint   usedOnce
	healthcheck  usedOnce
}

func (s *checkStage) addDep(src *checkStage, c instructions.Command) {
	if _, ok := s.deps[src]; !ok {
		s.depOrder = append(s.depOrder, src)
	}
	s.deps[src] = c
}

// init takes what a stage inherits from the stage it is built on.
func (s *checkStage) init() {
	if s.base == nil {
		return
	}
	s.env = s.base.env.clone()
	s.platform = s.base.platform
	s.img = cloneImageConfig(s.base.img)
	s.img.Config.OnBuild = nil
	s.workdirSet = s.base.workdirSet
	s.buildArgs = append(s.buildArgs, s.base.buildArgs...)
}

func cloneImageConfig(img dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	c := img
	c.Config.Env = slices.Clone(img.Config.Env)
	c.Config.Shell = slices.Clone(img.Config.Shell)
	c.Config.OnBuild = slices.Clone(img.Config.OnBuild)
	return c
}

type stageSet struct {
	states []*checkStage
	byName map[string]*checkStage
}

func (ss *stageSet) add(s *checkStage) {
	ss.states = append(ss.states, s)
	if b, ok := ss.byName[s.stage.BaseName]; ok {
		s.base = b
	}
	if s.stage.Name != "" {
		ss.byName[strings.ToLower(s.stage.Name)] = s
	}
}

func (ss *stageSet) find(name string) (*checkStage, bool) {
	s, ok := ss.byName[strings.ToLower(name)]
	return s, ok
}

func (ss *stageSet) names() []string {
	var out []string
	for _, s := range ss.states {
		if s.name != "" {
			out = append(out, s.name)
		}
	}
	return out
}

// walker holds what the walk over all stages shares.
type walker struct {
	path      string
	opts      CheckOptions
	lint      *linter.Linter
	shlex     *shell.Lex
	global    *envList
	buildArgs map[string]string
	target    ocispec.Platform
	all       stageSet
	allStages bool
	ignore    *patternmatcher.PatternMatcher
}

// defaultArgs are the automatic platform args, overridable by build args.
func defaultArgs(target ocispec.Platform, buildArgs map[string]string, targetStage string) *envList {
	if targetStage == "" {
		targetStage = "default"
	}
	bp := target
	env := newEnvList()
	for _, kv := range [...][2]string{
		{"BUILDPLATFORM", formatPlatform(bp)},
		{"BUILDOS", bp.OS},
		{"BUILDOSVERSION", bp.OSVersion},
		{"BUILDARCH", bp.Architecture},
		{"BUILDVARIANT", bp.Variant},
		{"TARGETPLATFORM", formatPlatformAll(target)},
		{"TARGETOS", target.OS},
		{"TARGETOSVERSION", target.OSVersion},
		{"TARGETARCH", target.Architecture},
		{"TARGETVARIANT", target.Variant},
		{"TARGETSTAGE", targetStage},
	} {
		v := kv[1]
		if ov, ok := buildArgs[kv[0]]; ok {
			v = ov
		}
		env.set(kv[0], v)
	}
	return env
}

// metaArgs applies the ARGs before the first FROM to the global args. It returns the keys the
// ARGs declared.
func metaArgs(args *envList, shlex *shell.Lex, argCmds []instructions.ArgCommand, buildArgs map[string]string) (*envList, map[string]struct{}, error) {
	args = args.clone()
	declared := map[string]struct{}{}
	for _, cmd := range argCmds {
		for _, kp := range cmd.Args {
			var value *string
			if v, ok := buildArgs[kp.Key]; ok {
				value = &v
			} else if kp.Value != nil {
				res, err := shlex.ProcessWordWithMatches(*kp.Value, args)
				if err != nil {
					return nil, nil, bkparser.WithLocation(err, cmd.Location())
				}
				value = &res.Result
			}
			if value != nil {
				args.set(kp.Key, *value)
			}
			declared[kp.Key] = struct{}{}
		}
	}
	return args, declared, nil
}

// validateBaseImagesWithDefaultArgs is InvalidDefaultArgInFrom: every base name must be a valid
// reference with the ARGs' defaults alone.
func (w *walker) validateBaseImagesWithDefaultArgs(stages []instructions.Stage, argCmds []instructions.ArgCommand) {
	args, _, err := metaArgs(w.global, w.shlex, argCmds, nil)
	if err != nil {
		return
	}
	for _, st := range stages {
		m, err := w.shlex.ProcessWordWithMatches(st.BaseName, args)
		if err != nil {
			return
		}
		if validateReference(m.Result) != nil {
			w.lint.Run(&linter.RuleInvalidDefaultArgInFrom, st.Location, linter.RuleInvalidDefaultArgInFrom.Format(st.BaseName))
		}
	}
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (w *walker) reportUnusedFromArgs(known map[string]struct{}, unmatched map[string]struct{}, loc []bkparser.Range, lint *linter.Linter) {
	keys := sortedKeys(known)
	for _, arg := range sortedKeys(unmatched) {
		if _, ok := known[arg]; ok {
			continue
		}
		s, _ := suggest.Search(arg, keys, true)
		lint.Run(&linter.RuleUndefinedArgInFrom, loc, linter.RuleUndefinedArgInFrom.Format(arg, s))
	}
}

// buildStates expands every FROM and creates the stages, as buildDispatchStates does.
func (w *walker) buildStates(stages []instructions.Stage, declared map[string]struct{}) error {
	known := func() map[string]struct{} {
		m := map[string]struct{}{}
		for k := range declared {
			m[k] = struct{}{}
		}
		for _, k := range w.global.Keys() {
			m[k] = struct{}{}
		}
		return m
	}
	for i, st := range stages {
		lint := w.lint.WithMergedConfigFromComments(st.Comments)
		nameMatch, err := w.shlex.ProcessWordWithMatches(st.BaseName, w.global)
		w.reportUnusedFromArgs(known(), nameMatch.Unmatched, st.Location, lint)
		if err != nil {
			return bkparser.WithLocation(err, st.Location)
		}
		if nameMatch.Result == "" {
			return bkparser.WithLocation(fmt.Errorf("base name (%s) should not be blank", st.BaseName), st.Location)
		}
		st.BaseName = nameMatch.Result
		s := &checkStage{stage: st, name: st.Name, deps: map[*checkStage]instructions.Command{}, env: newEnvList()}
		if v := st.Platform; v != "" {
			platMatch, err := w.shlex.ProcessWordWithMatches(v, w.global)
			w.reportUnusedFromArgs(known(), platMatch.Unmatched, st.Location, lint)
			w.reportRedundantTargetPlatform(st.Platform, platMatch, st.Location, lint)
			reportConstPlatformDisallowed(st.Name, platMatch, st.Location, lint)
			if err != nil {
				return bkparser.WithLocation(fmt.Errorf("failed to process arguments for platform %s: %w", platMatch.Result, err), st.Location)
			}
			if platMatch.Result == "" {
				err := bkparser.WithLocation(fmt.Errorf("empty platform value from expression %s", v), st.Location)
				return wrapSuggestAny(err, platMatch.Unmatched, w.global.Keys())
			}
			p, err := parsePlatform(platMatch.Result)
			if err != nil {
				err = wrapSuggestAny(err, platMatch.Unmatched, w.global.Keys())
				return bkparser.WithLocation(fmt.Errorf("failed to parse platform %s: %w", v, err), st.Location)
			}
			s.platform = &p
		}
		if st.Name == "" {
			s.name = fmt.Sprintf("stage-%d", i)
		}
		w.all.add(s)
	}
	return nil
}

func wrapSuggestAny(err error, keys map[string]struct{}, options []string) error {
	for _, k := range sortedKeys(keys) {
		var ok bool
		if ok, err = suggest.WrapErrorMaybe(err, k, options, true); ok {
			break
		}
	}
	return err
}

func (w *walker) reportRedundantTargetPlatform(platformVar string, m shell.ProcessWordResult, loc []bkparser.Range, lint *linter.Linter) {
	if len(m.Matched) != 1 || len(m.Unmatched) != 0 {
		return
	}
	if _, ok := m.Matched["TARGETPLATFORM"]; !ok {
		return
	}
	if v, _ := w.global.Get("TARGETPLATFORM"); m.Result == v {
		lint.Run(&linter.RuleRedundantTargetPlatform, loc, linter.RuleRedundantTargetPlatform.Format(platformVar))
	}
}

func reportConstPlatformDisallowed(stageName string, m shell.ProcessWordResult, loc []bkparser.Range, lint *linter.Linter) {
	if len(m.Matched) > 0 || len(m.Unmatched) > 0 {
		return
	}
	p, err := parsePlatform(m.Result)
	if err != nil {
		return
	}
	if strings.Contains(stageName, p.OS) || strings.Contains(stageName, p.Architecture) {
		return
	}
	lint.Run(&linter.RuleFromPlatformFlagConstDisallowed, loc, linter.RuleFromPlatformFlagConstDisallowed.Format(m.Result))
}

// resolveTarget finds the stage to build: the named target or the last stage.
func (w *walker) resolveTarget() (*checkStage, error) {
	if w.opts.Target == "" {
		return w.all.states[len(w.all.states)-1], nil
	}
	t, ok := w.all.find(w.opts.Target)
	if !ok {
		return nil, suggest.WrapError(fmt.Errorf("target stage %q could not be found", w.opts.Target), w.opts.Target, w.all.names(), true)
	}
	return t, nil
}

// sourcesOf finds the stages a command reads from (COPY --from, RUN --mount from=), adding
// images that are not stages, as BuildKit's toCommand and detectRunMount do.
func (w *walker) sourcesOf(ic instructions.Command) ([]*checkStage, error) {
	unregistered := func(name string, loc []bkparser.Range) *checkStage {
		return &checkStage{stage: instructions.Stage{BaseName: name, Location: loc}, deps: map[*checkStage]instructions.Command{}, unregistered: true, env: newEnvList()}
	}
	switch c := ic.(type) {
	case *instructions.CopyCommand:
		if c.From == "" {
			return nil, nil
		}
		res, err := w.shlex.ProcessWordWithMatches(c.From, shell.EnvsFromSlice(nil))
		if err != nil {
			return nil, err
		}
		if res.Result != c.From {
			return nil, errors.New("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround")
		}
		if index, err := strconv.Atoi(c.From); err == nil {
			if index < 0 || index >= len(w.all.states) {
				return nil, fmt.Errorf("invalid stage index %d", index)
			}
			return []*checkStage{w.all.states[index]}, nil
		}
		s, ok := w.all.find(c.From)
		if !ok {
			s = unregistered(c.From, c.Location())
		}
		return []*checkStage{s}, nil
	case *instructions.RunCommand:
		var out []*checkStage
		for _, m := range instructions.GetMounts(c) {
			from := m.From
			if from == "" {
				from = scratchImage
			}
			s, ok := w.all.find(from)
			if !ok {
				s = unregistered(from, nil)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, nil
}

func (w *walker) buildDependencyGraph() error {
	for _, d := range slices.Clone(w.all.states) {
		for _, c := range d.stage.Commands {
			srcs, err := w.sourcesOf(c)
			if err != nil {
				return err
			}
			d.commands = append(d.commands, checkCmd{Command: c, sources: srcs})
			for _, src := range srcs {
				d.addDep(src, c)
				if src.unregistered {
					w.all.add(src)
				}
			}
		}
	}
	return validateCircularDependency(w.all.states)
}

func validateCircularDependency(states []*checkStage) error {
	visited := map[*checkStage]struct{}{}
	onPath := map[*checkStage]struct{}{}
	var visit func(*checkStage, []instructions.Command) []instructions.Command
	visit = func(s *checkStage, cur []instructions.Command) []instructions.Command {
		if _, ok := visited[s]; ok {
			return nil
		}
		visited[s] = struct{}{}
		onPath[s] = struct{}{}
		for _, dep := range s.depOrder {
			next := append(slices.Clone(cur), s.deps[dep])
			if _, ok := onPath[dep]; ok {
				return next
			}
			if c := visit(dep, next); c != nil {
				return c
			}
		}
		delete(onPath, s)
		return nil
	}
	for _, s := range states {
		if cmds := visit(s, nil); cmds != nil {
			err := fmt.Errorf("circular dependency detected on stage: %s", s.name)
			for _, c := range cmds {
				err = bkparser.WithLocation(err, c.Location())
			}
			return err
		}
	}
	return nil
}

func reachable(t *checkStage) map[*checkStage]struct{} {
	out := map[*checkStage]struct{}{}
	var add func(*checkStage)
	add = func(s *checkStage) {
		if _, ok := out[s]; ok {
			return
		}
		out[s] = struct{}{}
		if s.base != nil {
			add(s.base)
		}
		for _, d := range s.depOrder {
			add(d)
		}
	}
	add(t)
	return out
}

// resolveStages resolves the base images and brings in ONBUILD triggers, as BuildKit does
// before it dispatches the instructions.
func (w *walker) resolveStages(ctx context.Context, target *checkStage) (map[*checkStage]struct{}, error) {
	for {
		var firstErr error
		reach := reachable(target)
		for _, d := range w.all.states {
			_, r := reach[d]
			if w.allStages {
				r = true
			}
			if d.base != nil || d.dispatched || d.resolved {
				continue
			}
			d.resolved = r
			if d.stage.BaseName == scratchImage {
				d.img = emptyImage(w.target)
				p := w.target
				d.platform = &p
				if d.unregistered {
					d.dispatched = true
				}
				continue
			}
			// BuildKit resolves the images concurrently: one failing does not stop the others
			// from being checked.
			if err := w.resolveBaseImage(ctx, d, r); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if firstErr != nil {
			return nil, firstErr
		}
		newDeps := false
		for _, d := range w.all.states {
			if _, ok := reach[d]; !ok {
				continue
			}
			d.init()
			triggers := slices.Clone(d.img.Config.OnBuild)
			if d.base != nil && !d.onBuildInit {
				for _, c := range d.base.commands {
					if ob, ok := c.Command.(*instructions.OnbuildCommand); ok {
						triggers = append(triggers, ob.Expression)
					}
				}
				d.onBuildInit = true
			}
			if len(triggers) > 0 {
				added, err := w.initOnBuildTriggers(d, triggers)
				if err != nil {
					return nil, bkparser.SetLocation(err, d.stage.Location)
				}
				newDeps = newDeps || added
				d.img.Config.OnBuild = nil
			}
		}
		if !newDeps {
			return reach, nil
		}
	}
}

func emptyImage(p ocispec.Platform) dockerspec.DockerOCIImage {
	var img dockerspec.DockerOCIImage
	img.Architecture, img.OS, img.OSVersion, img.Variant = p.Architecture, p.OS, p.OSVersion, p.Variant
	img.RootFS.Type = "layers"
	img.Config.WorkingDir = "/"
	img.Config.Env = []string{"PATH=" + defaultPathEnv}
	return img
}

func (w *walker) resolveBaseImage(ctx context.Context, d *checkStage, r bool) (err error) {
	defer func() {
		if err != nil {
			err = bkparser.WithLocation(err, d.stage.Location)
		}
		if d.unregistered {
			d.dispatched = true
		}
	}()
	orig := d.stage.BaseName
	if err := validateReference(orig); err != nil {
		return fmt.Errorf("failed to parse stage name %q: %w", orig, err)
	}
	platform := w.target
	if d.platform != nil {
		platform = *d.platform
	}
	if !r {
		d.platform = &platform
		return nil
	}
	if w.opts.Resolve == nil {
		return fmt.Errorf("%s: no image resolver", orig)
	}
	_, dt, err := w.opts.Resolve(ctx, orig)
	if err != nil {
		return suggest.WrapError(fmt.Errorf("%s: %w", orig, err), orig, append(w.all.names(), commonImageNames()...), true)
	}
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(dt, &img); err != nil {
		return fmt.Errorf("failed to parse image config: %w", err)
	}
	// An image without layers is built on as scratch, and its platform is not checked.
	isScratch := false
	if len(img.RootFS.DiffIDs) == 0 {
		isScratch = true
		for _, h := range img.History {
			if !h.EmptyLayer {
				isScratch = false
				break
			}
		}
	}
	d.img = img
	if !isScratch {
		actual := img.Platform
		if platform.OS != actual.OS || platform.Architecture != actual.Architecture {
			msg := linter.RuleInvalidBaseImagePlatform.Format(orig, formatPlatformAll(normalizePlatform(platform)), formatPlatformAll(normalizePlatform(actual)))
			w.lint.Run(&linter.RuleInvalidBaseImagePlatform, d.stage.Location, msg)
		}
	}
	d.platform = &platform
	return nil
}

func commonImageNames() []string {
	var out []string
	for _, name := range []string{"alpine", "busybox", "centos", "debian", "golang", "ubuntu", "fedora"} {
		out = append(out, name, "docker.io/library"+name, name+":latest", "docker.io/library"+name+":latest")
	}
	return out
}

// initOnBuildTriggers parses the ONBUILD triggers a stage inherits and runs them first, located
// at its FROM. It tells whether they read from stages not seen before.
func (w *walker) initOnBuildTriggers(d *checkStage, triggers []string) (bool, error) {
	added := false
	var cmds []checkCmd
	start, end := rangeStartEnd(d.stage.Location)
	for _, trigger := range triggers {
		res, err := bkparser.Parse(strings.NewReader(trigger))
		if err != nil {
			return false, err
		}
		if len(res.AST.Children) != 1 {
			return false, errors.New("onbuild trigger should be a single expression")
		}
		node := res.AST.Children[0]
		node.StartLine, node.EndLine = start, end
		ic, err := instructions.ParseCommand(node)
		if err != nil {
			return false, err
		}
		srcs, err := w.sourcesOf(ic)
		if err != nil {
			return false, err
		}
		if len(srcs) > 0 {
			added = true
		}
		cmds = append(cmds, checkCmd{Command: ic, sources: srcs})
		for _, src := range srcs {
			d.addDep(src, ic)
			if src.unregistered {
				w.all.add(src)
			}
		}
	}
	d.commands = append(cmds, d.commands...)
	return added, nil
}

func rangeStartEnd(r []bkparser.Range) (int, int) {
	if len(r) == 0 {
		return 0, 0
	}
	start, end := r[0].Start.Line, 0
	for _, rng := range r {
		start = min(start, rng.Start.Line)
		end = max(end, rng.End.Line)
	}
	return start, end
}
