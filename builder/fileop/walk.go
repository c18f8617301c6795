package fileop

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// errStopWalk ends a walk early without being an error.
var errStopWalk = errors.New("stop walk")

// entry is one file system object below a source being copied or hashed.
type entry struct {
	abs string      // path in the source tree
	rel string      // path below the source, "/" separated; "" for the source itself
	fi  os.FileInfo // Lstat result
}

// walker visits the tree below a directory in lexical order, skipping what
// .dockerignore (ig, matched against context-relative paths) or --exclude
// (ex, matched against source-relative paths) exclude, and what the include
// patterns of --parents (inc, source-relative) do not match. An excluded
// directory is walked into only when its patterns hold "!" exceptions; a
// directory that is merely not included is always walked into. Either is
// visited (before its contents) only once something inside it turns out to
// be kept: that is what BuildKit's context transfer and fsutil's copier do.
// post, when set, is called after a visited directory's contents.
type walker struct {
	ctx     context.Context
	ig      *Ignore
	ex      *Ignore
	inc     *Ignore
	visit   func(e *entry) error
	post    func(e *entry) error
	pending []*entry // hidden directories waiting for a kept descendant
}

// walkState is the pattern matching state of a directory being walked.
type walkState struct{ ig, ex, inc matchState }

// walkDir walks the children of dir; ctxRel is dir relative to the context
// root (what .dockerignore patterns match), rel is dir relative to the
// source (what --exclude and include patterns match).
func (w *walker) walkDir(dir, ctxRel, rel string, st walkState) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", rel, err)
	}
	for _, de := range ents {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		name := de.Name()
		childCtx, childRel := join(ctxRel, name), join(rel, name)
		var cst walkState
		ignored, igSt, err := w.ig.match(childCtx, st.ig)
		if err != nil {
			return err
		}
		excluded, exSt, err := w.ex.match(childRel, st.ex)
		if err != nil {
			return err
		}
		included, incSt := true, matchState{}
		if w.inc != nil {
			if included, incSt, err = w.inc.match(childRel, st.inc); err != nil {
				return err
			}
		}
		cst = walkState{ig: igSt, ex: exSt, inc: incSt}
		hidden := ignored || excluded || !included
		if hidden && (!de.IsDir() || (ignored && !w.ig.hasExceptions()) || (excluded && !w.ex.hasExceptions())) {
			continue
		}
		abs := dir + string(filepath.Separator) + name
		fi, err := de.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed while we walked
			}
			return fmt.Errorf("stat %s: %w", childRel, err)
		}
		e := &entry{abs: abs, rel: childRel, fi: fi}
		if hidden {
			w.pending = append(w.pending, e)
			if err := w.walkDir(abs, childCtx, childRel, cst); err != nil {
				return err
			}
			if n := len(w.pending); n > 0 && w.pending[n-1] == e {
				w.pending = w.pending[:n-1] // nothing kept inside
				continue
			}
			if w.post != nil {
				if err := w.post(e); err != nil {
					return err
				}
			}
			continue
		}
		if err := w.flush(); err != nil {
			return err
		}
		if err := w.visit(e); err != nil {
			return err
		}
		if fi.IsDir() {
			if err := w.walkDir(abs, childCtx, childRel, cst); err != nil {
				return err
			}
			if w.post != nil {
				if err := w.post(e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// flush visits the excluded directories that turned out to hold kept files.
func (w *walker) flush() error {
	for _, p := range w.pending {
		if err := w.visit(p); err != nil {
			return err
		}
	}
	w.pending = w.pending[:0]
	return nil
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func isNotDir(err error) bool {
	return errors.Is(err, syscall.ENOTDIR)
}
