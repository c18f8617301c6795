package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// emptyLayerDiffID is the digest of a tar with nothing but its 1024-byte end: the diff ID of
// every empty layer Docker and BuildKit write.
const emptyLayerDiffID = digest.Digest("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")

// upperDir is where an active overlay snapshot keeps its changes.
func upperDir(s Snapshotter, a *Active) string {
	return filepath.Join(s.(interface{ Dir() string }).Dir(), a.ID, "fs")
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestCopyUpIsNoChange: what overlay copies up without changing it (a file linked to a new
// name, a dir an entry was made and removed in) is not in the layer, and a file's first name
// written is a regular file even when the inode has another name in the tree.
func TestCopyUpIsNoChange(t *testing.T) {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("needs /bin/busybox (apt-get install busybox-static)")
	}
	// A time with nanoseconds, as a file made in a RUN step has: the metadata alone tells it.
	nsTime := fixedTime.Add(123456789)
	layers := map[string]Layer{}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			base := build(t, s, "", func(root string) {
				f := fs{t, root}
				baseTree(t, root)
				f.mkdir("usr", 0o755)
				f.mkdir("usr/bin", 0o755)
				f.write("usr/bin/busybox", string(bb), 0o755)
				f.check(setTimes(f.p("usr/bin/busybox"), nsTime, nsTime))
				f.fix("usr/bin", "usr")
			})
			a := prepare(t, s, base.chain)
			f := fs{t, a.Root}
			// RUN ln /usr/bin/busybox /l/hard, in a sandbox that stubs /etc/hosts.
			var etc unix.Stat_t
			f.check(unix.Lstat(f.p("etc"), &etc))
			f.write("etc/hosts", "", 0o644)
			f.mkdir("l", 0o755)
			f.link("usr/bin/busybox", "l/hard")
			f.fix("l")
			f.rm("etc/hosts")
			f.check(setTimes(f.p("etc"), time.Unix(etc.Mtim.Unix()), time.Unix(etc.Atim.Unix())))
			if kind == KindOverlay {
				// The test means something only if overlay did copy these up.
				up := upperDir(s, a)
				for _, p := range []string{"usr/bin/busybox", "etc"} {
					if !exists(filepath.Join(up, p)) {
						t.Fatalf("%s not copied up", p)
					}
				}
			}
			c := commit(t, s, a, CommitOptions{})
			checkLayer(t, c)
			layers[kind] = c.layer
			es := tarEntries(t, untgz(t, c.blob))
			if got, want := entryNames(es), []string{"l/", "l/hard"}; !slices.Equal(got, want) {
				t.Fatalf("entries %q, want %q", got, want)
			}
			if e, _ := findEntry(es, "l/hard"); e.typ != '0' || e.data != string(bb) || e.mode != 0o755 {
				t.Errorf("l/hard: type %c, mode %o, %d bytes; want a regular file with busybox", e.typ, e.mode, len(e.data))
			}
			// The snapshot itself may keep the two names linked; the files are the same.
			tree := view(t, s, c.chain)
			unlinked := regexp.MustCompile(` linkto=\S+`)
			for k, v := range tree {
				tree[k] = unlinked.ReplaceAllString(v, "")
			}
			if tree["l/hard"] == "" || tree["l/hard"] != tree["usr/bin/busybox"] {
				t.Errorf("view: l/hard %.80s, usr/bin/busybox %.80s", tree["l/hard"], tree["usr/bin/busybox"])
			}
		})
	}
	if layers[KindOverlay] != layers[KindCopy] {
		t.Errorf("layers differ: overlay %v, copy %v", layers[KindOverlay], layers[KindCopy])
	}
}

// TestCopyUpContent: a copied-up file alike in all metadata is compared by content when its
// mtime has no nanoseconds (a tar-restored time says little).
func TestCopyUpContent(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			base := build(t, s, "", func(root string) { baseTree(t, root) })
			c := build(t, s, base.chain, func(root string) {
				f := fs{t, root}
				f.write("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644) // same bytes
				f.write("etc/group", "ROOT:X:0:\n", 0o644)                  // same size, other bytes
				f.fix("etc/passwd", "etc/group")
			})
			if got, want := entryNames(tarEntries(t, untgz(t, c.blob))), []string{"etc/", "etc/group"}; !slices.Equal(got, want) {
				t.Errorf("entries %q, want %q", got, want)
			}
		})
	}
}

// TestLowerChainLookup: an upper entry is compared with what the lower dirs show at its path,
// across the chain, honouring whiteouts and opaque dirs of the layers above.
func TestLowerChainLookup(t *testing.T) {
	layers := map[string][]Layer{}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			l1 := build(t, s, "", func(root string) {
				baseTree(t, root)
				f := fs{t, root}
				f.write("w", "w", 0o644)
				f.write("opq/f", "f", 0o644)
				f.fix("w", "opq/f", "opq")
			})
			l2 := build(t, s, l1.chain, func(root string) {
				f := fs{t, root}
				f.rm("w")
				f.rm("opq")
				f.mkdir("opq", 0o755)
				f.write("etc/group", "changed\n", 0o644)
				f.fix("opq", "etc/group")
			})
			l3 := build(t, s, l2.chain, func(root string) {
				f := fs{t, root}
				// The same as in l1, but l2 removed them: new files.
				f.write("w", "w", 0o644)
				f.write("opq/f", "f", 0o644)
				// In l1 only, seen through etc/ of l2: unchanged.
				f.link("etc/passwd", "etc/passwd2")
				f.fix("w", "opq/f", "opq", "etc")
				// Enough entries in the root that its lower dirs' names are listed, not looked
				// up one by one, while etc/ and opq/ are looked up one by one.
				for _, n := range []string{"n1", "n2", "n3", "n4"} {
					f.write(n, n, 0o644)
					f.fix(n)
				}
			})
			want := []string{"etc/", "etc/passwd2", "n1", "n2", "n3", "n4", "opq/", "opq/f", "w"}
			if got := entryNames(tarEntries(t, untgz(t, l3.blob))); !slices.Equal(got, want) {
				t.Errorf("entries %q, want %q", got, want)
			}
			layers[kind] = []Layer{l1.layer, l2.layer, l3.layer}
		})
	}
	if !slices.Equal(layers[KindOverlay], layers[KindCopy]) {
		t.Errorf("layers differ:\n overlay %v\n copy    %v", layers[KindOverlay], layers[KindCopy])
	}
}

// TestParentDirs: each entry's parent dirs come first, once, with their current metadata.
func TestParentDirs(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			base := build(t, s, "", func(root string) {
				baseTree(t, root)
				f := fs{t, root}
				f.mkdir("home", 0o751)
				f.mkdir("home/app", 0o700)
				f.chown("home", 0, 50)
				f.fix("home/app", "home")
			})
			c := build(t, s, base.chain, func(root string) {
				f := fs{t, root}
				f.chown("home/app", 1000, 1000)         // RUN chown 1000:1000 /home/app
				f.write("home/app/.profile", "", 0o644) // and a file in it
				f.rm("d/sub/c")                         // a whiteout two dirs down
				f.fix("home/app/.profile", "home/app", "d/sub")
			})
			es := tarEntries(t, untgz(t, c.blob))
			want := []string{"d/", "d/sub/", "d/sub/.wh.c", "home/", "home/app/", "home/app/.profile"}
			if got := entryNames(es); !slices.Equal(got, want) {
				t.Fatalf("entries %q, want %q", got, want)
			}
			if e, _ := findEntry(es, "home/"); e.mode != 0o751 || e.uid != 0 || e.gid != 50 {
				t.Errorf("home/: mode %o owner %d:%d, want 751 0:50", e.mode, e.uid, e.gid)
			}
			if e, _ := findEntry(es, "home/app/"); e.mode != 0o700 || e.uid != 1000 || e.gid != 1000 {
				t.Errorf("home/app/: mode %o owner %d:%d, want 700 1000:1000", e.mode, e.uid, e.gid)
			}
			if e, _ := findEntry(es, "d/sub/"); e.mode != 0o700 {
				t.Errorf("d/sub/: mode %o, want 700", e.mode)
			}
		})
	}
}

// TestEmptyLayer: a step that changes nothing still commits a layer: a tar with only its end.
func TestEmptyLayer(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			base := build(t, s, "", func(root string) { baseTree(t, root) })
			for _, parent := range []string{"", base.chain} {
				c := build(t, s, parent, func(string) {})
				tarb := untgz(t, c.blob)
				if len(tarb) != 1024 || !bytes.Equal(tarb, make([]byte, 1024)) {
					t.Errorf("over %q: empty layer tar is %d bytes, want 1024 zero bytes", parent, len(tarb))
				}
				if c.layer.DiffID != emptyLayerDiffID {
					t.Errorf("over %q: diff ID %s, want %s", parent, c.layer.DiffID, emptyLayerDiffID)
				}
				if c.chain != ChainID(parent, emptyLayerDiffID) || !s.Has(c.chain) {
					t.Errorf("over %q: chain %s not kept", parent, c.chain)
				}
				if parent != "" {
					diffTrees(t, view(t, s, c.chain), view(t, s, parent))
				}
			}
		})
	}
}

// BenchmarkCommitOverChain commits 5,000 new small files in dirs that each of 20 lower layers
// has: the worst case of looking entries up in the lower dirs.
func BenchmarkCommitOverChain(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			s := newSnapshotter(b, kind)
			parent := ""
			for i := range 20 {
				parent = build(b, s, parent, func(root string) {
					for d := range 50 {
						dd := filepath.Join(root, fmt.Sprintf("dir%02d", d))
						os.Mkdir(dd, 0o755)
						os.WriteFile(filepath.Join(dd, fmt.Sprintf("lower%02d", i)), []byte("x"), 0o644)
					}
				}).chain
			}
			for b.Loop() {
				b.StopTimer()
				a := prepare(b, s, parent)
				for d := range 50 {
					dd := filepath.Join(a.Root, fmt.Sprintf("dir%02d", d))
					for i := range 100 {
						os.WriteFile(filepath.Join(dd, fmt.Sprintf("file%03d", i)), []byte("data"), 0o644)
					}
				}
				b.StartTimer()
				if _, _, err := s.Commit(context.Background(), a, &bytes.Buffer{}, CommitOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
