// Package parser turns Dockerfile text into stages of typed instructions, using BuildKit's own
// parser and instruction packages so that every Dockerfile parses exactly as BuildKit parses it.
package parser

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	bkparser "github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Dockerfile is a parsed Dockerfile.
type Dockerfile struct {
	Path     string                    // as the user named it, for errors
	Stages   []instructions.Stage      // in order; stage i is FROM number i
	MetaArgs []instructions.ArgCommand // ARGs before the first FROM
	Escape   rune                      // the escape token (directive `# escape=`)
	Warnings []Warning                 // parser and lint warnings
}

// Warning is a non-fatal finding about the Dockerfile.
type Warning struct {
	Line    int
	Message string
}

// Error is an error located in a Dockerfile: the path and line a user needs to fix it.
type Error struct {
	Path string
	Line int // 0 when the error has no line
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// At wraps err with the Dockerfile path and the first line of loc. An error that already carries
// a location is returned unchanged.
func At(path string, loc []bkparser.Range, err error) error {
	if err == nil {
		return nil
	}
	var located *Error
	if errors.As(err, &located) {
		return err
	}
	line := 0
	if len(loc) > 0 {
		line = loc[0].Start.Line
	}
	return &Error{Path: path, Line: line, Err: stripLocation(err)}
}

// stripLocation removes BuildKit's location wrapper: Error prints the location itself.
func stripLocation(err error) error {
	var loc *bkparser.LocationError
	if errors.As(err, &loc) && loc.Unwrap() != nil {
		return loc.Unwrap()
	}
	return err
}

// Parse parses a Dockerfile's text. path names it in errors.
func Parse(path string, data []byte) (*Dockerfile, error) {
	if err := checkSyntax(path, data); err != nil {
		return nil, err
	}
	res, err := bkparser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, locate(path, err)
	}
	df := &Dockerfile{Path: path, Escape: res.EscapeToken}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		df.Warnings = append(df.Warnings, Warning{Line: line, Message: w.Short})
	}
	lint := linter.New(&linter.Config{Warn: func(rule, desc, url, msg string, loc []bkparser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		df.Warnings = append(df.Warnings, Warning{Line: line, Message: fmt.Sprintf("%s: %s", rule, msg)})
	}})
	// The loop of instructions.Parse, kept here so that every error gets its node's line.
	for _, n := range res.AST.Children {
		cmd, err := instructions.ParseInstructionWithLinter(n, lint)
		if err != nil {
			return nil, &Error{Path: path, Line: n.StartLine, Err: stripLocation(err)}
		}
		switch c := cmd.(type) {
		case *instructions.Stage:
			df.Stages = append(df.Stages, *c)
		case *instructions.ArgCommand:
			if len(df.Stages) == 0 {
				df.MetaArgs = append(df.MetaArgs, *c)
				continue
			}
			df.Stages[len(df.Stages)-1].AddCommand(c)
		case instructions.Command:
			if len(df.Stages) == 0 {
				return nil, &Error{Path: path, Line: n.StartLine, Err: fmt.Errorf("%s before the first FROM: a Dockerfile must begin with FROM (ARG may come before it)", c.Name())}
			}
			df.Stages[len(df.Stages)-1].AddCommand(c)
		default:
			return nil, &Error{Path: path, Line: n.StartLine, Err: fmt.Errorf("unexpected instruction %T", cmd)}
		}
	}
	if len(df.Stages) == 0 {
		return nil, &Error{Path: path, Err: errors.New("the Dockerfile has no FROM instruction")}
	}
	return df, nil
}

// locate turns a BuildKit parse error into an Error with the line it carries.
func locate(path string, err error) error {
	var loc *bkparser.LocationError
	if errors.As(err, &loc) && len(loc.Locations) > 0 && len(loc.Locations[0]) > 0 {
		return &Error{Path: path, Line: loc.Locations[0][0].Start.Line, Err: loc.Unwrap()}
	}
	return &Error{Path: path, Err: err}
}

// checkSyntax accepts a `# syntax=` directive that names a Dockerfile frontend (kiln implements
// the Dockerfile language itself, so any docker/dockerfile version builds as kiln's) and refuses
// any other frontend with a clear error.
func checkSyntax(path string, data []byte) error {
	ref, _, loc, ok := bkparser.DetectSyntax(data)
	if !ok {
		return nil
	}
	name := ref
	if i := strings.IndexAny(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	name = strings.TrimPrefix(name, "docker.io/")
	switch name {
	case "docker/dockerfile", "docker/dockerfile-upstream":
		return nil
	}
	line := 1
	if len(loc) > 0 {
		line = loc[0].Start.Line
	}
	return &Error{Path: path, Line: line, Err: fmt.Errorf("syntax %q is not supported: kiln builds Dockerfiles itself and runs no other frontend (use docker/dockerfile, or remove the directive)", ref)}
}
