package fileop

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// source is one resolved COPY/ADD source: a path written in the Dockerfile,
// or one match of a wildcard, with symlinks followed inside SrcRoot.
type source struct {
	name string      // base name it gets when copied into a directory
	abs  string      // resolved path below SrcRoot
	rel  string      // abs relative to SrcRoot, "/" separated, "" for the root
	fi   os.FileInfo // Lstat of abs; never a symlink
	inc  *Ignore     // --parents: what below abs is copied (nil: everything)
}

// isURL tells an http(s) source, which BuildKit fetches instead of reading
// from the context.
func isURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// resolveSources expands s.Sources into the files and directories to copy,
// in Dockerfile order and, within a wildcard, in lexical order. A wildcard
// that matches nothing contributes nothing (BuildKit: AllowEmptyWildcard);
// a plain path that does not exist is an ErrNotFound error.
func resolveSources(ctx context.Context, s *Spec) ([]source, error) {
	if len(s.Exclude) > 0 && s.exclude == nil {
		ex, err := NewIgnore(s.Exclude)
		if err != nil {
			return nil, fmt.Errorf("%s failed: --exclude: %w", s.instruction(), err)
		}
		s.exclude = ex
	}
	var out []source
	for _, src := range s.Sources {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if isURL(src) {
			if s.instruction() == "COPY" {
				return nil, fmt.Errorf("%s failed: source can't be a URL for COPY: %w", s.instruction(), ErrURLNotSupported)
			}
			return nil, fmt.Errorf("%s failed: %q: %w", s.instruction(), src, ErrURLNotSupported)
		}
		var inc *Ignore
		if s.Parents {
			var err error
			if src, inc, err = s.splitParents(ctx, src); err != nil {
				return nil, err
			}
		}
		p := path.Clean("/" + filepath.ToSlash(src))
		if !containsWildcards(p) {
			one, err := s.resolveOne(ctx, p, path.Base(p))
			if err != nil {
				return nil, err
			}
			one.inc = inc
			out = append(out, one)
			continue
		}
		matches, err := s.resolveWildcard(ctx, p)
		if err != nil {
			return nil, err
		}
		for i := range matches {
			matches[i].inc = inc
		}
		out = append(out, matches...)
	}
	return out, nil
}

// splitParents cuts a --parents source at its "/./" pivot, as BuildKit does:
// the part before is what gets copied (the root when there is no pivot), the
// part after becomes an include pattern below it. Without wildcards in
// either part, the path they make must exist.
func (s *Spec) splitParents(ctx context.Context, src string) (string, *Ignore, error) {
	parent, pattern, ok := strings.Cut(filepath.ToSlash(src), "/./")
	if !ok {
		parent, pattern = "/", src
	}
	pattern = strings.TrimPrefix(path.Clean("/"+pattern), "/")
	if !containsWildcards(parent) && !containsWildcards(pattern) {
		req := path.Clean("/" + path.Join(parent, pattern))
		if _, err := s.resolveOne(ctx, req, path.Base(req)); err != nil {
			return "", nil, err
		}
	}
	if pattern == "" {
		// BuildKit's include pattern "" matches nothing, so the copy finds
		// nothing to checksum: "a/b/./" is a not-found error there too.
		p := path.Clean("/" + filepath.ToSlash(parent))
		return "", nil, fmt.Errorf("%s failed: %q: %w", s.instruction(), p, ErrNotFound)
	}
	inc, err := NewIgnore([]string{pattern})
	if err != nil {
		return "", nil, fmt.Errorf("%s failed: --parents pattern %q: %w", s.instruction(), pattern, err)
	}
	return parent, inc, nil
}

// resolveOne follows p (clean, absolute within SrcRoot) and checks that the
// result is visible in the (filtered) source tree.
func (s *Spec) resolveOne(ctx context.Context, p, name string) (source, error) {
	notFound := fmt.Errorf("%s failed: %q: %w", s.instruction(), p, ErrNotFound)
	abs, err := resolveInRoot(s.SrcRoot, p, true, func(rel string) error {
		if ex, err := s.Ignore.Excluded(rel, false); err != nil {
			return err
		} else if ex {
			return notFound
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return source{}, err
		}
		return source{}, fmt.Errorf("%s failed: resolve %q: %w", s.instruction(), p, err)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return source{}, notFound
		}
		return source{}, fmt.Errorf("%s failed: %w", s.instruction(), err)
	}
	rel := relTo(s.SrcRoot, abs)
	ok, err := s.visible(ctx, rel, abs, fi)
	if err != nil {
		return source{}, fmt.Errorf("%s failed: %w", s.instruction(), err)
	}
	if !ok {
		return source{}, notFound
	}
	if name == "/" || name == "." {
		name = path.Base("/" + rel)
	}
	return source{name: name, abs: abs, rel: rel, fi: fi}, nil
}

// visible tells whether rel survives .dockerignore: it is not excluded, or it
// is an excluded directory that a "!" pattern keeps something inside of.
func (s *Spec) visible(ctx context.Context, rel, abs string, fi os.FileInfo) (bool, error) {
	if s.Ignore == nil || rel == "" {
		return true, nil
	}
	excluded, st, err := s.Ignore.stateOf(rel)
	if err != nil || !excluded {
		return !excluded, err
	}
	if !fi.IsDir() || !s.Ignore.hasExceptions() {
		return false, nil
	}
	found := false
	w := walker{ctx: ctx, ig: s.Ignore, visit: func(*entry) error {
		found = true
		return errStopWalk
	}}
	if err := w.walkDir(abs, rel, "", walkState{ig: st}); err != nil && !errors.Is(err, errStopWalk) {
		return false, err
	}
	return found, nil
}

// resolveWildcard expands a pattern the way fsutil does: the components
// before the first one with a wildcard are resolved (following links), the
// rest is matched with filepath.Match against paths below it; a matched
// directory is not descended into.
func (s *Spec) resolveWildcard(ctx context.Context, p string) ([]source, error) {
	prefix, pattern := splitWildcards(p)
	base, err := resolveInRoot(s.SrcRoot, prefix, true, nil)
	if err != nil {
		return nil, fmt.Errorf("%s failed: resolve %q: %w", s.instruction(), prefix, err)
	}
	if _, err := filepath.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("%s failed: bad pattern %q: %w", s.instruction(), p, err)
	}
	// filepath.Match's wildcards never match "/", so a match has exactly as
	// many components as the pattern: no need to walk deeper than that.
	depth := strings.Count(pattern, "/") + 1
	var matches []string
	var walk func(dir, rel string, level int) error
	walk = func(dir, rel string, level int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
				return nil // nothing to match below a missing or non-directory prefix
			}
			return fmt.Errorf("%s failed: read %s: %w", s.instruction(), relTo(s.SrcRoot, dir), err)
		}
		for _, e := range ents {
			r := e.Name()
			if rel != "" {
				r = rel + "/" + e.Name()
			}
			if ok, _ := filepath.Match(pattern, r); ok {
				matches = append(matches, path.Join(dir, e.Name()))
				continue
			}
			if e.IsDir() && level+1 < depth {
				if err := walk(path.Join(dir, e.Name()), r, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(base, "", 0); err != nil {
		return nil, err
	}
	var out []source
	for _, m := range matches {
		one, err := s.resolveOne(ctx, "/"+relTo(s.SrcRoot, m), path.Base(m))
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // hidden by .dockerignore or a dangling link
			}
			return nil, err
		}
		out = append(out, one)
	}
	return out, nil
}

// containsWildcards mirrors BuildKit: '*', '?' and '[' are wildcards unless
// escaped with a backslash.
func containsWildcards(name string) bool {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// splitWildcards cuts p (clean, absolute) before its first component holding
// a wildcard.
func splitWildcards(p string) (prefix, pattern string) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, part := range parts {
		if containsWildcards(part) {
			return "/" + strings.Join(parts[:i], "/"), strings.Join(parts[i:], "/")
		}
	}
	return p, ""
}

// relTo gives abs relative to root, "/" separated, "" for root itself.
func relTo(root, abs string) string {
	root = filepath.Clean(root)
	if abs == root {
		return ""
	}
	return filepath.ToSlash(strings.TrimPrefix(abs, root+string(filepath.Separator)))
}
