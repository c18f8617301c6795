package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestMain runs the tests under a temp dir of their own and checks, after all tests, that no
// test left a mount under it.
func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "kiln-snapshot-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp) // t.TempDir uses it
	code := m.Run()
	pts, err := mountsUnder(tmp)
	if err != nil || len(pts) > 0 {
		fmt.Fprintln(os.Stderr, "left mounted:", pts, err)
		unmountAll(tmp)
		code = 1
	}
	os.RemoveAll(tmp)
	os.Exit(code)
}

// TestDeepChain mounts a chain of 160 layers: more lower dirs than fit in one mount(2) page.
func TestDeepChain(t *testing.T) {
	s := newSnapshotter(t, KindOverlay)
	parent := ""
	const depth = 160
	for i := range depth {
		c := build(t, s, parent, func(root string) {
			f := fs{t, root}
			f.write(fmt.Sprintf("f%03d", i), fmt.Sprint(i), 0o644)
			if i > 0 {
				f.rm(fmt.Sprintf("f%03d", i-1)) // a whiteout in every layer
			}
		})
		parent = c.chain
	}
	a := prepare(t, s, parent)
	names, err := readNames(a.Root)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != fmt.Sprintf("f%03d", depth-1) {
		t.Errorf("top of a %d-deep chain shows %v", depth, names)
	}
	if err := s.Abort(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	tree := view(t, s, parent)
	if len(tree) != 1 {
		t.Errorf("view shows %v", tree)
	}
}

// TestMountLegacy: the mount(2) fallback works with relative lower paths, and says so clearly
// when the options do not fit.
func TestMountLegacy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	t.Cleanup(func() { checkNoMounts(t, dir) })
	var lowers []string
	for i := range 3 {
		l := filepath.Join(dir, fmt.Sprintf("%064d", i), "fs")
		if err := os.MkdirAll(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, l)
	}
	for _, d := range []string{"up", "work", "merged"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	o := overlayMount{lowers: lowers, upper: filepath.Join(dir, "up"), work: filepath.Join(dir, "work"), target: filepath.Join(dir, "merged")}
	if err := mountOverlayLegacy(o); err != nil {
		t.Fatal(err)
	}
	names, _ := readNames(o.target)
	if err := unmount(o.target); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "0,1,2" {
		t.Errorf("merged shows %v", names)
	}
	for range 100 {
		o.lowers = append(o.lowers, lowers[0])
	}
	if err := mountOverlayLegacy(o); err == nil || !strings.Contains(err.Error(), "one-page") {
		unmount(o.target)
		t.Errorf("oversized options: %v", err)
	}
}

// TestConcurrentCommit: processes racing to commit the same chain leave one good snapshot.
func TestConcurrentCommit(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			dir := s.(interface{ Dir() string }).Dir()
			// Two snapshotters on one dir, as two kiln processes would have.
			s2, err := New(dir, kind)
			if err != nil {
				t.Fatal(err)
			}
			const n = 6
			actives := make([]*Active, n)
			for i := range actives {
				sn := s
				if i%2 == 1 {
					sn = s2
				}
				actives[i] = prepare(t, sn, "")
				baseTree(t, actives[i].Root)
			}
			var wg sync.WaitGroup
			chains := make([]string, n)
			errs := make([]error, n)
			for i := range actives {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sn := s
					if i%2 == 1 {
						sn = s2
					}
					_, chains[i], errs[i] = sn.Commit(context.Background(), actives[i], &bytes.Buffer{}, CommitOptions{})
				}()
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				if chains[i] != chains[0] {
					t.Errorf("chains differ: %s %s", chains[i], chains[0])
				}
			}
			infos, err := s.List(context.Background())
			if err != nil || len(infos) != 1 {
				t.Fatalf("List: %v %v", infos, err)
			}
			if tree := view(t, s, chains[0]); !strings.Contains(tree["etc/passwd"], "root:x:0:0") {
				t.Errorf("snapshot after race: %v", tree)
			}
			// The losers went to the trash; Cleanup empties it.
			if err := Cleanup(context.Background(), dir); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "trash-") || strings.HasPrefix(e.Name(), "active-") {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}

func TestRemoveAbortCleanup(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			ctx := context.Background()
			dir := s.(interface{ Dir() string }).Dir()
			base := build(t, s, "", func(root string) { baseTree(t, root) })
			child := build(t, s, base.chain, func(root string) { fs{t, root}.write("x", "x", 0o644) })
			a := prepare(t, s, child.chain)
			if err := s.Abort(ctx, a); err != nil {
				t.Fatal(err)
			}
			if kind == KindOverlay {
				if err := s.Remove(ctx, base.chain); !errors.Is(err, ErrHasChildren) {
					t.Errorf("removing a parent: %v", err)
				}
			}
			if err := s.Remove(ctx, child.chain); err != nil {
				t.Fatal(err)
			}
			if s.Has(child.chain) {
				t.Error("removed snapshot still there")
			}
			if err := s.Remove(ctx, child.chain); !errors.Is(err, ErrNotFound) {
				t.Errorf("removing twice: %v", err)
			}
			if _, err := s.Prepare(ctx, child.chain); !errors.Is(err, ErrNotFound) {
				t.Errorf("prepare over a removed snapshot: %v", err)
			}
			if err := s.Remove(ctx, base.chain); err != nil {
				t.Fatal(err)
			}
			trash, _ := filepath.Glob(filepath.Join(dir, "trash-*"))
			if len(trash) != 3 {
				t.Errorf("trash holds %v", trash)
			}
			if err := s.(interface{ Cleanup(context.Context) error }).Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 || ents[0].Name() != "empty" {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("after cleanup: %v", names)
			}
		})
	}
}

func TestNewKinds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for kind, want := range map[string]string{"": "*snapshot.Overlay", "overlay": "*snapshot.Overlay",
		"copy": "*snapshot.Copy", "auto": "*snapshot.Overlay"} {
		dir := filepath.Join(t.TempDir(), "snapshots")
		s, err := New(dir, kind)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%T", s); got != want {
			t.Errorf("New(%q) = %s, want %s", kind, got, want)
		}
		checkNoMounts(t, dir)
	}
	if _, err := New(t.TempDir(), "zfs"); err == nil {
		t.Error("unknown kind accepted")
	}
}

// BenchmarkCommit commits a layer of 5,000 small files.
func BenchmarkCommit(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			s := newSnapshotter(b, kind)
			var bytesIn int64
			for b.Loop() {
				b.StopTimer()
				a := prepare(b, s, "")
				for d := range 50 {
					dd := filepath.Join(a.Root, fmt.Sprintf("dir%02d", d))
					os.Mkdir(dd, 0o755)
					for i := range 100 {
						data := bytes.Repeat([]byte(fmt.Sprintf("%d-%d-%d ", b.N, d, i)), 100)
						os.WriteFile(filepath.Join(dd, fmt.Sprintf("file%03d", i)), data, 0o644)
						bytesIn += int64(len(data))
					}
				}
				b.StartTimer()
				if _, _, err := s.Commit(context.Background(), a, &bytes.Buffer{}, CommitOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(bytesIn / int64(b.N))
		})
	}
}

// TestCleanupOrphans: Cleanup takes away the work dirs (and mounts) of dead processes only.
func TestCleanupOrphans(t *testing.T) {
	s := newSnapshotter(t, KindOverlay).(*Overlay)
	ctx := context.Background()
	live := prepare(t, s, "")
	dead := prepare(t, s, "")
	s.unlock(dead.ID) // as if its process had died
	if err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.path(dead.ID)); !os.IsNotExist(err) {
		t.Errorf("orphaned active snapshot still there: %v", err)
	}
	if pts, _ := mountsUnder(s.path(dead.ID)); len(pts) != 0 {
		t.Errorf("orphan's mount left: %v", pts)
	}
	if err := os.WriteFile(filepath.Join(live.Root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatalf("live snapshot broken by Cleanup: %v", err)
	}
	if _, _, err := s.Commit(ctx, live, &bytes.Buffer{}, CommitOptions{}); err != nil {
		t.Fatal(err)
	}
}
