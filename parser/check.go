package parser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	bkparser "github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"
)

// ImageConfigFunc returns the manifest digest and the config JSON of an image reference: how
// the checks learn a base image's environment and platform.
type ImageConfigFunc func(ctx context.Context, ref string) (digest.Digest, []byte, error)

// CheckOptions are the build inputs the checks depend on.
type CheckOptions struct {
	Target    string
	BuildArgs map[string]string // BUILDKIT_DOCKERFILE_CHECK here replaces the `# check=` directive
	Resolve   ImageConfigFunc
	// DockerIgnore holds the context's .dockerignore patterns, for CopyIgnoredFile.
	DockerIgnore []string
}

// Finding is one broken rule, where it was found.
type Finding struct {
	Rule        string // e.g. JSONArgsRecommended
	Description string // the rule's description
	URL         string // the rule's documentation
	Detail      string // the message for this finding
	Line        int    // first line of the instruction; 0 when none
	EndLine     int
	Ranges      []bkparser.Range // the lines marked in the printed source
}

// CheckResult is what `kiln build --check` reports: the rule violations, and the error that
// would stop the build, as BuildKit's checks report them.
type CheckResult struct {
	Path     string
	Source   []byte
	Findings []Finding // in the order `docker build --check` prints them
	Err      error     // the error that stops the build, if any (a *CheckError)
}

// CheckError is the error that would stop the build, located in the Dockerfile as BuildKit
// locates it.
type CheckError struct {
	Message string
	Ranges  []bkparser.Range // empty when the error has no place in the Dockerfile
	Err     error
}

func (e *CheckError) Error() string { return e.Message }
func (e *CheckError) Unwrap() error { return e.Err }

// Failed tells whether the check should fail the build command (a finding or an error).
func (r *CheckResult) Failed() bool { return len(r.Findings) > 0 || r.Err != nil }

// Warnings lists the findings as warnings.
func (r *CheckResult) Warnings() []Warning {
	var out []Warning
	for _, f := range r.Findings {
		out = append(out, Warning{Line: f.Line, Message: f.Rule + ": " + f.Detail})
	}
	return out
}

// Print writes the findings as `docker build --check` does: each rule with its link, the
// message, and the Dockerfile lines around it.
func (r *CheckResult) Print(w io.Writer) error {
	var b bytes.Buffer
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "\nWARNING: %s", f.Rule)
		if f.URL != "" {
			fmt.Fprintf(&b, " - %s", f.URL)
		}
		fmt.Fprintf(&b, "\n%s\n", f.Detail)
		printSource(&b, r.Path, r.Source, f.Ranges)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// PrintError writes the error that stops the build with its Dockerfile lines, as
// `docker build --check` prints it; nothing when there is none.
func (r *CheckResult) PrintError(w io.Writer) error {
	if r.Err == nil {
		return nil
	}
	var b bytes.Buffer
	b.WriteString(r.Err.Error() + "\n")
	var ce *CheckError
	if errors.As(r.Err, &ce) {
		printSource(&b, r.Path, r.Source, ce.Ranges)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// printSource prints the lines of ranges with some context, the marked lines prefixed by >>>.
func printSource(w *bytes.Buffer, name string, src []byte, ranges []bkparser.Range) {
	if len(ranges) == 0 {
		return
	}
	lines := strings.Split(string(src), "\n")
	start, end := ranges[0].Start.Line, 0
	for _, r := range ranges {
		start = min(start, r.Start.Line)
		end = max(end, r.End.Line, r.Start.Line)
	}
	if start > len(lines) || start < 1 {
		return
	}
	end = min(end, len(lines))
	// Two lines of context on each side, four for a one-line range, as far as the file goes.
	pad := 2
	if end == start {
		pad = 4
	}
	first := start
	for p := 0; p < pad; p++ {
		if start > 1 {
			start--
			p++
		}
		if end != len(lines) {
			end++
			p++
		}
	}
	fmt.Fprintf(w, "%s:%d\n--------------------\n", name, first)
	for i := start; i <= end; i++ {
		pfx := "   "
		for _, r := range ranges {
			if r.Start.Line <= i && max(r.End.Line, r.Start.Line) >= i {
				pfx = ">>>"
				break
			}
		}
		fmt.Fprintf(w, " %3d | %s %s\n", i, pfx, lines[i-1])
	}
	w.WriteString("--------------------\n")
}

// Check runs the Dockerfile checks over the Dockerfile at path with text data: BuildKit's
// frontend/dockerfile/linter rules, those checked while parsing and those BuildKit checks while
// it converts the stages (which need the base images' configs, from opts.Resolve).
func Check(ctx context.Context, path string, data []byte, opts CheckOptions) (*CheckResult, error) {
	res := &CheckResult{Path: path, Source: data}
	var findings []Finding
	warn := func(rule, desc, url, msg string, loc []bkparser.Range) {
		f := Finding{Rule: rule, Description: desc, URL: url, Detail: msg, Ranges: slices.Clone(loc)}
		if len(loc) > 0 {
			f.Line, f.EndLine = rangeStartEnd(loc)
		}
		findings = append(findings, f)
	}
	lint, err := runChecks(ctx, data, opts, warn)
	if err == nil && lint != nil {
		// With `# check=error=true` the findings themselves stop the build.
		err = lintError(lint)
	}
	if err != nil {
		ce := &CheckError{Message: err.Error(), Err: err}
		var loc *bkparser.LocationError
		if errors.As(err, &loc) {
			ce.Ranges = mergeLocations(loc.Locations...)
		}
		res.Err = ce
	}
	sortFindings(findings)
	res.Findings = findings
	return res, nil
}

// lintError is linter.Error with the rules in the order they first fired (BuildKit lists them
// in map order).
func lintError(lint *linter.Linter) error {
	if !lint.ReturnAsError || len(*lint.CalledRules) == 0 {
		return nil
	}
	var rules []string
	for _, r := range *lint.CalledRules {
		if !slices.Contains(rules, r) {
			rules = append(rules, r)
		}
	}
	return &LintViolationError{Rules: rules}
}

// LintViolationError stops a build whose Dockerfile says `# check=error=true` and breaks rules.
type LintViolationError struct{ Rules []string }

func (e *LintViolationError) Error() string {
	return "lint violation found for rules: " + strings.Join(e.Rules, ", ")
}

// sortFindings orders the findings as BuildKit's lint results are printed: by first line, those
// without a line first. The sort is the same (not stable) sort over the findings in the order the
// rules fired, so that findings on one line come out in the same order too.
func sortFindings(fs []Finding) {
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if len(a.Ranges) == 0 && len(b.Ranges) == 0 {
			return a.Rule < b.Rule
		} else if len(a.Ranges) == 0 || len(b.Ranges) == 0 {
			return len(a.Ranges) == 0
		}
		return a.Ranges[0].Start.Line < b.Ranges[0].Start.Line
	})
}

// mergeLocations joins the places an error was located at into non-overlapping ranges.
func mergeLocations(locs ...[]bkparser.Range) []bkparser.Range {
	var all []bkparser.Range
	for _, l := range locs {
		all = append(all, l...)
	}
	if len(all) <= 1 {
		return all
	}
	slices.SortFunc(all, func(a, b bkparser.Range) int { return a.Start.Line - b.Start.Line })
	var out []bkparser.Range
	cur := all[0]
	for _, r := range all[1:] {
		if r.Start.Line <= cur.End.Line {
			cur.End.Line = max(cur.End.Line, r.End.Line)
		} else {
			out = append(out, cur)
			cur = r
		}
	}
	return append(out, cur)
}

// lintConfig is the checks' configuration: the BUILDKIT_DOCKERFILE_CHECK build arg if given,
// else the `# check=` directive.
func lintConfig(data []byte, buildArgs map[string]string) (*linter.Config, error) {
	if v, ok := buildArgs["BUILDKIT_DOCKERFILE_CHECK"]; ok {
		cfg, err := linter.ParseLintOptions(v)
		if err != nil {
			return nil, fmt.Errorf("failed to parse build-arg:BUILDKIT_DOCKERFILE_CHECK: %w", err)
		}
		return cfg, nil
	}
	v, _, _, _ := bkparser.ParseDirective("check", data)
	cfg, err := linter.ParseLintOptions(v)
	if err != nil {
		return nil, fmt.Errorf("failed to parse check options: %w", err)
	}
	return cfg, nil
}

// runChecks does the work of Check, in BuildKit's order; the error is the one that stops the
// build. The linter is returned for its error=true verdict.
func runChecks(ctx context.Context, data []byte, opts CheckOptions, warn linter.LintWarnFunc) (*linter.Linter, error) {
	if len(data) == 0 {
		return nil, errors.New("the Dockerfile cannot be empty")
	}
	cfg, err := lintConfig(data, opts.BuildArgs)
	if err != nil {
		return nil, err
	}
	cfg.Warn = warn
	lint := linter.New(cfg)

	ast, err := bkparser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	for _, w := range ast.Warnings {
		if w.URL == linter.RuleNoEmptyContinuation.URL && w.Location != nil {
			lint.Run(&linter.RuleNoEmptyContinuation, []bkparser.Range{*w.Location}, linter.RuleNoEmptyContinuation.Format())
		}
	}
	stages, argCmds, err := instructions.Parse(ast.AST, lint)
	if err != nil {
		return lint, err
	}
	if len(stages) == 0 {
		return lint, errors.New("dockerfile contains no stages to build")
	}
	validateStageNames(stages, lint)
	validateCommandCasing(stages, lint)

	buildArgs := opts.BuildArgs
	if buildArgs == nil {
		buildArgs = map[string]string{}
	}
	targetName := opts.Target
	if targetName == "" {
		targetName = stages[len(stages)-1].Name
	}
	w := &walker{
		opts:      opts,
		lint:      lint,
		shlex:     shell.NewLex(ast.EscapeToken),
		buildArgs: buildArgs,
		target:    nativePlatform(),
		all:       stageSet{byName: map[string]*checkStage{}},
		allStages: opts.Target == "",
	}
	w.global = defaultArgs(w.target, buildArgs, targetName)
	w.validateBaseImagesWithDefaultArgs(stages, argCmds)
	global, declared, err := metaArgs(w.global, w.shlex, argCmds, buildArgs)
	if err != nil {
		return lint, err
	}
	w.global = global
	if len(opts.DockerIgnore) > 0 {
		if w.ignore, err = patternmatcher.New(opts.DockerIgnore); err != nil {
			return lint, fmt.Errorf("parse .dockerignore: %w", err)
		}
	}
	if err := w.buildStates(stages, declared); err != nil {
		return lint, err
	}
	target, err := w.resolveTarget()
	if err != nil {
		return lint, err
	}
	if err := w.buildDependencyGraph(); err != nil {
		return lint, err
	}
	reach, err := w.resolveStages(ctx, target)
	if err != nil {
		return lint, err
	}
	if err := w.dispatchStages(reach); err != nil {
		return lint, err
	}
	return lint, nil
}

// validateStageNames is ReservedStageName and DuplicateStageName.
func validateStageNames(stages []instructions.Stage, lint *linter.Linter) {
	seen := map[string]struct{}{}
	for _, st := range stages {
		if st.Name == "" {
			continue
		}
		if _, ok := reservedStageNames[st.Name]; ok {
			lint.Run(&linter.RuleReservedStageName, st.Location, linter.RuleReservedStageName.Format(st.Name))
		}
		if _, ok := seen[st.Name]; ok {
			lint.Run(&linter.RuleDuplicateStageName, st.Location, linter.RuleDuplicateStageName.Format(st.Name))
		}
		seen[st.Name] = struct{}{}
	}
}

func selfConsistentCasing(s string) bool { return s == strings.ToLower(s) || s == strings.ToUpper(s) }

// validateCommandCasing is ConsistentInstructionCasing: every instruction is cased as most are.
func validateCommandCasing(stages []instructions.Stage, lint *linter.Linter) {
	var lower, upper int
	count := func(name string) {
		if !selfConsistentCasing(name) {
			return
		}
		if strings.ToLower(name) == name {
			lower++
		} else {
			upper++
		}
	}
	for _, st := range stages {
		count(st.OrigCmd)
		for _, c := range st.Commands {
			count(c.Name())
		}
	}
	majorityLower := lower > upper
	check := func(name string, loc []bkparser.Range) {
		var want string
		if majorityLower && strings.ToLower(name) != name {
			want = "lowercase"
		} else if !majorityLower && strings.ToUpper(name) != name {
			want = "uppercase"
		}
		if want != "" {
			lint.Run(&linter.RuleConsistentInstructionCasing, loc, linter.RuleConsistentInstructionCasing.Format(name, want))
		}
	}
	for _, st := range stages {
		check(st.OrigCmd, st.Location)
		for _, c := range st.Commands {
			check(c.Name(), c.Location())
		}
	}
}
