package parser

import (
	"context"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
)

// ImageConfigFunc returns the manifest digest and the config JSON of an image reference: how
// the checks learn a base image's environment and platform.
type ImageConfigFunc func(ctx context.Context, ref string) (digest.Digest, []byte, error)

// CheckOptions are the build inputs the checks depend on.
type CheckOptions struct {
	Target    string
	BuildArgs map[string]string
	Resolve   ImageConfigFunc
}

// Finding is one broken rule, where it was found.
type Finding struct {
	Rule        string // e.g. JSONArgsRecommended
	Description string // the rule's description
	URL         string // the rule's documentation
	Detail      string // the message for this finding
	Line        int    // first line of the instruction; 0 when none
	EndLine     int
}

// CheckResult is what `kiln build --check` reports: the rule violations, and the error that
// would stop the build, as BuildKit's checks report them.
type CheckResult struct {
	Path     string
	Source   []byte
	Findings []Finding
	Err      error // the error that stops the build, if any
}

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

// Print writes the result as `docker build --check` does.
func (r *CheckResult) Print(w io.Writer) error {
	for _, f := range r.Findings {
		fmt.Fprintf(w, "\nWARNING: %s", f.Rule)
		if f.URL != "" {
			fmt.Fprintf(w, " - %s", f.URL)
		}
		fmt.Fprintf(w, "\n%s\n", f.Detail)
	}
	if r.Err != nil {
		fmt.Fprintf(w, "\nERROR: %v\n", r.Err)
	}
	return nil
}

// Check runs the Dockerfile checks over the Dockerfile at path with text data.
func Check(ctx context.Context, path string, data []byte, opts CheckOptions) (*CheckResult, error) {
	res := &CheckResult{Path: path, Source: data}
	df, err := Parse(path, data)
	if err != nil {
		res.Err = err
		return res, nil
	}
	for _, w := range df.Warnings {
		res.Findings = append(res.Findings, Finding{Detail: w.Message, Line: w.Line})
	}
	return res, nil
}
