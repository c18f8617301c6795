package runtime

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// mountOverlay mounts lower under a fresh upper dir and returns the merged root and the upper.
func mountOverlay(t *testing.T, lower string) (merged, upper string) {
	t.Helper()
	dir := t.TempDir()
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("overlay mount refused: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, 0); err != nil {
			t.Errorf("unmount overlay: %v", err)
		}
	})
	return merged, upper
}

// listTree lists every path below dir.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The sandbox's mounts must leave nothing in an overlay's upper dir: binding over a lower file
// does not copy it up, and stubs made for missing mount points are removed again.
func TestRunLeavesOverlayUpperClean(t *testing.T) {
	tests := []struct {
		name      string
		etcFiles  bool     // the image has /etc/hosts, resolv.conf, hostname
		wantUpper []string // what may be left: a copied-up /etc, with its times restored
	}{
		{"image has every mount point", true, nil},
		{"image lacks the etc files", false, []string{"etc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lower := newTestRoot(t, true)
			for _, d := range []string{"proc", "dev", "sys"} {
				if err := os.Mkdir(filepath.Join(lower, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.etcFiles {
				for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
					writeFile(t, filepath.Join(lower, "etc", f), "image "+f+"\n")
				}
			}
			etcBefore, err := os.Stat(filepath.Join(lower, "etc"))
			if err != nil {
				t.Fatal(err)
			}
			merged, upper := mountOverlay(t, lower)
			out, err := runShell(t, merged, "cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && ls /dev /proc/self /sys >/dev/null && echo ok")
			if err != nil || out != "ok\n" {
				t.Fatalf("run: %v: %q", err, out)
			}
			if got := listTree(t, upper); !slices.Equal(got, tt.wantUpper) {
				t.Errorf("upper dir holds %q, want %q", got, tt.wantUpper)
			}
			if slices.Contains(tt.wantUpper, "etc") {
				fi, err := os.Stat(filepath.Join(upper, "etc"))
				if err != nil {
					t.Fatal(err)
				}
				if !fi.ModTime().Equal(etcBefore.ModTime()) {
					t.Errorf("copied-up /etc mtime %v, lower's %v", fi.ModTime(), etcBefore.ModTime())
				}
			}
		})
	}
}
