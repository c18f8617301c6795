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
	"kiln/builder/fileop"
	"kiln/parser"
)

// errChecksFailed makes `kiln build --check` exit non-zero, as `docker build --check` does, after
// the findings were printed.
type errChecksFailed struct{ n int }

func (e errChecksFailed) Error() string { return fmt.Sprintf("%d check(s) failed", e.n) }

// runChecks runs the Dockerfile checks. With full, it prints every finding with its source, as
// `docker build --check` does; otherwise it prints nothing (printCheckSummary does, after a build).
func runChecks(ctx context.Context, b *builder.Builder, opts builder.Options, w io.Writer, full bool) (*parser.CheckResult, error) {
	path := opts.Dockerfile
	if path == "" {
		path = filepath.Join(opts.ContextDir, "Dockerfile")
	}
	data := opts.DockerfileText
	if data == nil {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read Dockerfile: %w", err)
		}
	}
	// CopyIgnoredFile needs the context's .dockerignore, read as the build reads it.
	ig, err := fileop.LoadIgnore(opts.ContextDir, opts.Dockerfile)
	if err != nil {
		return nil, err
	}
	res, err := parser.Check(ctx, filepath.Base(path), data, parser.CheckOptions{
		Target: opts.Target, BuildArgs: opts.BuildArgs, Resolve: b.ImageConfig, DockerIgnore: ig.Patterns(),
	})
	if err != nil {
		return nil, err
	}
	warnings := res.Warnings()
	if full {
		// As `docker build --check`: the count (none is said only when nothing failed), the
		// findings, then the error that stops the build with its Dockerfile lines.
		switch {
		case len(warnings) > 0:
			fmt.Fprintf(w, "Check complete, %d warning%s been found!\n", len(warnings), plural(len(warnings), " has", "s have"))
		case res.Err == nil:
			fmt.Fprintln(w, "Check complete, no warnings found.")
		}
		if err := res.Print(w); err != nil {
			return nil, err
		}
		if res.Err != nil {
			if len(warnings) > 0 {
				fmt.Fprintln(w)
			}
			var msg strings.Builder
			if err := res.PrintError(&msg); err != nil {
				return nil, err
			}
			return nil, errors.New(strings.TrimSuffix(msg.String(), "\n"))
		}
		return res, nil
	}
	return res, nil
}

// printCheckSummary prints the checks' findings after a build, as BuildKit lists them.
func printCheckSummary(w io.Writer, res *parser.CheckResult) {
	warnings := res.Warnings()
	if len(warnings) == 0 {
		return
	}
	fmt.Fprintf(w, "\n %d warning%s found:\n", len(warnings), plural(len(warnings), "", "s"))
	for _, wn := range warnings {
		fmt.Fprintf(w, " - %s (line %d)\n", wn.Message, wn.Line)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
