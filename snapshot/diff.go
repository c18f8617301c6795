package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// WriteLayer writes the overlay-format upper dir dir (whiteouts as 0/0 char devices, opaque dirs
// marked by trusted.overlay.opaque=y) as an OCI layer tar, compressed per opts, to w. With no
// lower dirs to compare with, every entry of dir is written.
// Entries are in a fixed order (depth first, names sorted bytewise), so the same tree always
// gives the same bytes.
func WriteLayer(ctx context.Context, dir string, w io.Writer, opts CommitOptions) (Layer, error) {
	l, _, err := writeUpperLayer(ctx, dir, nil, w, opts)
	return l, err
}

// upperStats is what a commit learns about the upper dir while writing it.
type upperStats struct {
	size      int64 // bytes of regular files in the upper dir, written or not
	whiteouts bool  // the upper dir holds a whiteout or an opaque dir
}

// writeUpperLayer writes the changes in the upper dir dir over lowers (the lower dirs it was
// mounted with, topmost first) as a layer, in one pass: what copy-up alone put in the upper dir
// is left out, and every entry written is preceded by its parent dirs, as containerd's differ
// and tar writer (BuildKit's) give them.
func writeUpperLayer(ctx context.Context, dir string, lowers []string, w io.Writer, opts CommitOptions) (Layer, upperStats, error) {
	lw, err := newLayerWriter(ctx, w, opts)
	if err != nil {
		return Layer{}, upperStats{}, err
	}
	u := &upperWalker{lw: lw, inodes: map[fileKey]bool{}}
	if err := u.walk(dir, "", lowers); err != nil {
		lw.abort()
		return Layer{}, upperStats{}, fmt.Errorf("write layer of %s: %w", dir, err)
	}
	l, err := lw.finish()
	return l, u.stats, err
}

// upperWalker walks an upper dir depth first. The dirs on the path to the current entry wait
// on a stack and are written only when they changed or when something under them is written.
type upperWalker struct {
	lw      *layerWriter
	path    []pathDir // dirs from the root's child down to the dir being walked
	written int       // path[:written] are in the layer already
	stats   upperStats
	inodes  map[fileKey]bool // regular files counted in stats.size
}

type pathDir struct {
	abs, name string
	st        unix.Stat_t
}

// writeParents writes the dirs on the path not written yet, outermost first.
func (u *upperWalker) writeParents() error {
	for ; u.written < len(u.path); u.written++ {
		d := &u.path[u.written]
		if err := u.lw.add(d.abs, d.name, &d.st); err != nil {
			return err
		}
	}
	return nil
}

func (u *upperWalker) account(st *unix.Stat_t) {
	k := fileKey{uint64(st.Dev), st.Ino}
	if st.Nlink > 1 {
		if u.inodes[k] {
			return
		}
		u.inodes[k] = true
	}
	u.stats.size += st.Size
}

// walk writes the changes under the upper dir abs (layer path rel, "" or ending in "/"), whose
// lower counterparts are lowers: the lower dirs that merge into it, topmost first.
func (u *upperWalker) walk(abs, rel string, lowers []string) error {
	if err := u.lw.ctx.Err(); err != nil {
		return err
	}
	names, err := readNames(abs)
	if err != nil {
		return err
	}
	ls := newLowerSet(lowers, len(names))
	for _, n := range names {
		p := filepath.Join(abs, n)
		name := rel + n
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		switch typ := st.Mode & unix.S_IFMT; {
		case isWhiteout(&st):
			u.stats.whiteouts = true
			if err := u.writeParents(); err != nil {
				return err
			}
			if err := u.lw.addWhiteout(name); err != nil {
				return err
			}
		case typ == unix.S_IFSOCK:
			// A tar cannot hold a socket.
		case typ == unix.S_IFDIR:
			if err := u.dir(p, name, &st, n, ls); err != nil {
				return err
			}
		default:
			if typ == unix.S_IFREG {
				u.account(&st)
			}
			lo, err := ls.lookup(n, false)
			if err != nil {
				return err
			}
			if lo.found {
				same, err := sameEntry(p, lo.path, &st, &lo.st)
				if err != nil {
					return err
				}
				if same {
					continue // copied up, not changed
				}
			}
			if err := u.writeParents(); err != nil {
				return err
			}
			if err := u.lw.add(p, name, &st); err != nil {
				return err
			}
		}
	}
	return nil
}

// dir handles the upper dir p (base name n) and what is under it.
func (u *upperWalker) dir(p, name string, st *unix.Stat_t, n string, ls *lowerSet) error {
	opaque := isOpaque(p)
	var lo lowerEntry
	if !opaque {
		var err error
		if lo, err = ls.lookup(n, true); err != nil {
			return err
		}
	}
	same := false
	if lo.found {
		var err error
		if same, err = sameEntry(p, lo.path, st, &lo.st); err != nil {
			return err
		}
	}
	u.path = append(u.path, pathDir{abs: p, name: name, st: *st})
	if !same {
		if err := u.writeParents(); err != nil {
			return err
		}
	}
	if opaque {
		u.stats.whiteouts = true
		if err := u.lw.addOpaque(name); err != nil {
			return err
		}
	}
	if err := u.walk(p, name+"/", lo.dirs); err != nil {
		return err
	}
	u.path = u.path[:len(u.path)-1]
	u.written = min(u.written, len(u.path))
	return nil
}

// lowerEntry is what the lower dirs show at a path.
type lowerEntry struct {
	found bool
	path  string // where it is: in the topmost lower dir that has it
	st    unix.Stat_t
	dirs  []string // for a dir: the lower dirs that merge into it, topmost first
}

// lowerSet is the lower dirs that merge into one upper dir, topmost first. For an upper dir with
// many entries, each lower dir's names are read once (when first needed), so that a name a
// lower dir lacks, as every new file's name is, costs no system call there.
type lowerSet struct {
	dirs  []string
	byDir bool
	names []map[string]struct{} // of dirs[i]; nil until read
}

// listAbove is the number of upper entries above which a dir's lower names are read.
const listAbove = 4

func newLowerSet(dirs []string, upperEntries int) *lowerSet {
	ls := &lowerSet{dirs: dirs, byDir: upperEntries > listAbove && len(dirs) > 0}
	if ls.byDir {
		ls.names = make([]map[string]struct{}, len(dirs))
	}
	return ls
}

// has reports whether lower dir i may hold name.
func (ls *lowerSet) has(i int, name string) (bool, error) {
	if !ls.byDir {
		return true, nil
	}
	if ls.names[i] == nil {
		f, err := os.Open(ls.dirs[i])
		if err != nil {
			return false, err
		}
		ns, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return false, fmt.Errorf("read dir %s: %w", ls.dirs[i], err)
		}
		m := make(map[string]struct{}, len(ns))
		for _, n := range ns {
			m[n] = struct{}{}
		}
		ls.names[i] = m
	}
	_, ok := ls.names[i][name]
	return ok, nil
}

// lookup finds name in the merged view of the lower dirs as overlay does: a whiteout hides the
// name in the dirs below, a non-dir or an opaque dir ends the merge. With wantDirs, it also
// lists the dirs that merge at name.
func (ls *lowerSet) lookup(name string, wantDirs bool) (lowerEntry, error) {
	var e lowerEntry
	for i, l := range ls.dirs {
		if ok, err := ls.has(i, name); err != nil || !ok {
			if err != nil {
				return lowerEntry{}, err
			}
			continue
		}
		p := filepath.Join(l, name)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return lowerEntry{}, fmt.Errorf("stat %s: %w", p, err)
		}
		if isWhiteout(&st) || st.Mode&unix.S_IFMT != unix.S_IFDIR && e.found {
			break
		}
		if !e.found {
			e.found, e.path, e.st = true, p, st
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || !wantDirs {
			break
		}
		e.dirs = append(e.dirs, p)
		if isOpaque(p) {
			break
		}
	}
	return e, nil
}

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// readNames returns the names in dir, sorted bytewise.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read dir %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}
