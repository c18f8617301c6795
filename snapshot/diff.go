package snapshot

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// WriteLayer writes the overlay-format upper dir dir (whiteouts as 0/0 char devices, opaque dirs
// marked by trusted.overlay.opaque=y) as an OCI layer tar, compressed per opts, to w.
// Entries are in a fixed order (depth first, names sorted bytewise), so the same tree always
// gives the same bytes.
func WriteLayer(ctx context.Context, dir string, w io.Writer, opts CommitOptions) (Layer, error) {
	l, _, err := writeUpperLayer(ctx, dir, w, opts)
	return l, err
}

// upperStats is what a commit learns about the upper dir while writing it.
type upperStats struct {
	size      int64
	whiteouts bool
}

func writeUpperLayer(ctx context.Context, dir string, w io.Writer, opts CommitOptions) (Layer, upperStats, error) {
	lw, err := newLayerWriter(ctx, w, opts)
	if err != nil {
		return Layer{}, upperStats{}, err
	}
	if err := walkUpper(lw, dir, ""); err != nil {
		lw.abort()
		return Layer{}, upperStats{}, fmt.Errorf("write layer of %s: %w", dir, err)
	}
	l, err := lw.finish()
	return l, upperStats{size: lw.size, whiteouts: lw.whiteouts}, err
}

func walkUpper(lw *layerWriter, abs, rel string) error {
	names, err := readNames(abs)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(abs, n)
		name := rel + n
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if isWhiteout(&st) {
			if err := lw.addWhiteout(name); err != nil {
				return err
			}
			continue
		}
		if err := lw.add(p, name, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if isOpaque(p) {
				if err := lw.addOpaque(name); err != nil {
					return err
				}
			}
			if err := walkUpper(lw, p, name+"/"); err != nil {
				return err
			}
		}
	}
	return nil
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
