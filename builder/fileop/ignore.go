package fileop

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// DockerignoreName is the context's ignore file.
const DockerignoreName = ".dockerignore"

// Ignore holds the build context's .dockerignore patterns. Paths are matched
// relative to the context root, with "/" separators, as BuildKit's context
// transfer matches them. A nil *Ignore excludes nothing.
type Ignore struct {
	file     string // where the patterns came from, for error messages
	patterns []string
	pm       *patternmatcher.PatternMatcher
}

// LoadIgnore reads the ignore patterns for a build. As BuildKit does, a
// Dockerfile-specific "<Dockerfile>.dockerignore" next to the Dockerfile wins
// over the context's ".dockerignore". dockerfilePath is the Dockerfile's path
// as given to the build (empty or "-" when it is not a file); a relative path
// is taken relative to the current directory, as -f is. A context without
// either file gives a nil *Ignore and no error.
func LoadIgnore(contextDir, dockerfilePath string) (*Ignore, error) {
	var candidates []string
	if dockerfilePath != "" && dockerfilePath != "-" {
		candidates = append(candidates, dockerfilePath+DockerignoreName)
	}
	candidates = append(candidates, filepath.Join(contextDir, DockerignoreName))
	for _, name := range candidates {
		dt, err := os.ReadFile(name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("read ignore file: %w", err)
		}
		patterns, err := ignorefile.ReadAll(bytes.NewReader(dt))
		if err != nil {
			return nil, fmt.Errorf("failed parsing %s: %w", name, err)
		}
		ig, err := NewIgnore(patterns)
		if err != nil {
			return nil, fmt.Errorf("failed parsing %s: %w", name, err)
		}
		if ig != nil {
			ig.file = name
		}
		return ig, nil
	}
	return nil, nil
}

// NewIgnore builds an Ignore from patterns in .dockerignore syntax (already
// read with ignorefile.ReadAll). No patterns give a nil *Ignore.
func NewIgnore(patterns []string) (*Ignore, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("invalid ignore patterns: %w", err)
	}
	return &Ignore{patterns: append([]string(nil), patterns...), pm: pm}, nil
}

// Patterns returns the patterns in file order (nil for a nil *Ignore). The
// builder puts them into cache keys.
func (i *Ignore) Patterns() []string {
	if i == nil {
		return nil
	}
	return append([]string(nil), i.patterns...)
}

// Excluded reports whether the patterns exclude rel (context-relative, "/"
// separators) either directly or through one of its parent directories. An
// excluded directory can still hold files a later "!" pattern brings back;
// Copy and Checksum handle that by walking into it (isDir is accepted for
// callers' symmetry and future use).
func (i *Ignore) Excluded(rel string, isDir bool) (bool, error) {
	if i == nil {
		return false, nil
	}
	rel = cleanRel(rel)
	if rel == "" {
		return false, nil
	}
	m, err := i.pm.MatchesOrParentMatches(rel)
	if err != nil {
		return false, fmt.Errorf("match %q against ignore patterns: %w", rel, err)
	}
	return m, nil
}

// matchState is the per-directory memo of pattern results that lets a walk
// match each path once against its parent's results.
type matchState struct {
	info patternmatcher.MatchInfo
}

// match tells whether rel is excluded given its parent's state, and the
// state to hand to rel's children.
func (i *Ignore) match(rel string, parent matchState) (bool, matchState, error) {
	if i == nil {
		return false, matchState{}, nil
	}
	m, info, err := i.pm.MatchesUsingParentResults(rel, parent.info)
	if err != nil {
		return false, matchState{}, fmt.Errorf("match %q against ignore patterns: %w", rel, err)
	}
	return m, matchState{info: info}, nil
}

// stateOf computes the match state of rel by matching each of its ancestors
// in turn, as a walk from the context root would have.
func (i *Ignore) stateOf(rel string) (bool, matchState, error) {
	var st matchState
	if i == nil || rel == "" {
		return false, st, nil
	}
	var excluded bool
	var err error
	parts := strings.Split(rel, "/")
	for n := range parts {
		excluded, st, err = i.match(strings.Join(parts[:n+1], "/"), st)
		if err != nil {
			return false, st, err
		}
	}
	return excluded, st, nil
}

// hasExceptions reports whether some "!" pattern may bring back paths below
// an excluded directory, which forces a walk into excluded directories.
func (i *Ignore) hasExceptions() bool {
	return i != nil && i.pm.Exclusions()
}

// cleanRel turns a context-relative path into the form patterns see: clean,
// "/" separators, no leading "/", "" for the root.
func cleanRel(rel string) string {
	rel = path.Clean("/" + filepath.ToSlash(rel))
	return strings.TrimPrefix(rel, "/")
}
