package snapshot

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// baseTree makes a small tree of everything, with fixed times, in root.
func baseTree(t testing.TB, root string) {
	f := fs{t, root}
	f.mkdir("etc", 0o755)
	f.write("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
	f.write("etc/group", "root:x:0:\n", 0o644)
	f.mkdir("d", 0o755)
	f.write("d/a", "a", 0o644)
	f.write("d/b", "b", 0o600)
	f.mkdir("d/sub", 0o700)
	f.write("d/sub/c", "c", 0o644)
	f.mkdir("opq", 0o755)
	f.write("opq/old1", "1", 0o644)
	f.write("opq/old2", "2", 0o644)
	f.write("file", "file", 0o644)
	f.write("tobedir", "x", 0o644)
	f.mkdir("tobefile", 0o755)
	f.write("tobefile/x", "x", 0o644)
	f.symlink("etc/passwd", "lnk")
	f.write("bin", "#!/bin/sh\n", 0o755)
	f.chown("bin", 1000, 1000)
	f.fix("etc/passwd", "etc/group", "etc", "d/a", "d/b", "d/sub/c", "d/sub", "d", "opq/old1", "opq/old2", "opq",
		"file", "tobedir", "tobefile/x", "tobefile", "lnk", "bin")
}

func TestPrepareCommitChain(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			base := build(t, s, "", func(root string) { baseTree(t, root) })
			if base.layer.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
				t.Errorf("media type %s", base.layer.MediaType)
			}
			if base.chain != base.layer.DiffID.String() {
				t.Errorf("chain of a first layer %s, want its diff ID %s", base.chain, base.layer.DiffID)
			}
			es := tarEntries(t, untgz(t, base.blob))
			want := []string{"bin", "d/", "d/a", "d/b", "d/sub/", "d/sub/c", "etc/", "etc/group", "etc/passwd",
				"file", "lnk", "opq/", "opq/old1", "opq/old2", "tobedir", "tobefile/", "tobefile/x"}
			if got := entryNames(es); !slices.Equal(got, want) {
				t.Errorf("entries\n got  %q\n want %q", got, want)
			}
			if e, _ := findEntry(es, "bin"); e.uid != 1000 || e.gid != 1000 || e.mode != 0o755 || e.data != "#!/bin/sh\n" {
				t.Errorf("bin entry %+v", e)
			}
			if e, _ := findEntry(es, "lnk"); e.link != "etc/passwd" {
				t.Errorf("lnk entry %+v", e)
			}
			if e, _ := findEntry(es, "d/sub/"); e.mode != 0o700 {
				t.Errorf("d/sub entry mode %o", e.mode)
			}
			if !s.Has(base.chain) {
				t.Fatal("committed snapshot missing")
			}

			// The second layer sees the first and changes one file.
			second := build(t, s, base.chain, func(root string) {
				b, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
				if err != nil {
					t.Fatal(err)
				}
				f := fs{t, root}
				f.write("etc/passwd", string(b)+"app:x:1000:1000::/:/bin/sh\n", 0o644)
				f.fix("etc/passwd", "etc")
			})
			es = tarEntries(t, untgz(t, second.blob))
			if got := entryNames(es); !slices.Equal(got, []string{"etc/", "etc/passwd"}) {
				t.Errorf("second layer entries %q", got)
			}
			if second.chain != ChainID(base.chain, second.layer.DiffID) {
				t.Errorf("chain %s", second.chain)
			}
			tree := view(t, s, second.chain)
			if !strings.Contains(tree["etc/passwd"], "app:x:1000") || !strings.Contains(tree["d/sub/c"], `data="c"`) {
				t.Errorf("view of second layer: %v", tree)
			}
			infos, err := s.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 2 {
				t.Errorf("List: %+v", infos)
			}
			// The real tar reads the layer too.
			p := filepath.Join(t.TempDir(), "l.tgz")
			if err := os.WriteFile(p, base.blob, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("tar", "-tzvf", p).CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("d/sub/c")) {
				t.Errorf("tar -tzvf: %v\n%s", err, out)
			}
		})
	}
}

// whiteoutChanges deletes and replaces things of baseTree.
func whiteoutChanges(t testing.TB, root string) {
	f := fs{t, root}
	f.rm("file")    // file from a lower layer
	f.rm("d/sub")   // dir from a lower layer
	f.rm("tobedir") // file replaced by a dir
	f.mkdir("tobedir", 0o755)
	f.write("tobedir/new", "n", 0o644)
	f.rm("tobefile") // dir replaced by a file
	f.write("tobefile", "now a file", 0o644)
	f.rm("opq") // rm -rf opq && mkdir opq: an opaque dir
	f.mkdir("opq", 0o755)
	f.write("opq/new", "new", 0o644)
	f.fix("d", "tobedir/new", "tobedir", "tobefile", "opq/new", "opq")
}

func TestWhiteouts(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			base := build(t, s, "", func(root string) { baseTree(t, root) })
			c := build(t, s, base.chain, func(root string) { whiteoutChanges(t, root) })
			es := tarEntries(t, untgz(t, c.blob))
			want := []string{"d/", "d/.wh.sub", ".wh.file", "opq/", "opq/.wh..wh..opq", "opq/new",
				"tobedir/", "tobedir/.wh..wh..opq", "tobedir/new", "tobefile"}
			got := entryNames(es)
			if !slices.Equal(got, want) {
				t.Errorf("entries\n got  %q\n want %q", got, want)
			}
			for _, e := range es {
				if strings.Contains(e.name, ".wh.") && (e.typ != '0' || e.data != "" || e.mode != 0) {
					t.Errorf("whiteout entry %+v", e)
				}
			}
			tree := view(t, s, c.chain)
			for _, gone := range []string{"file", "d/sub", "d/sub/c", "opq/old1", "opq/old2", "tobefile/x"} {
				if _, ok := tree[gone]; ok {
					t.Errorf("%s still seen", gone)
				}
			}
			for _, seen := range []string{"d/a", "opq/new", "tobedir/new", "etc/passwd"} {
				if _, ok := tree[seen]; !ok {
					t.Errorf("%s not seen", seen)
				}
			}
			if !strings.HasPrefix(tree["tobefile"], "mode=100644") {
				t.Errorf("tobefile: %s", tree["tobefile"])
			}
			// The same layer applied by ApplyTar onto a copy of the base gives the same tree.
			plain := t.TempDir()
			broot, release, err := s.View(context.Background(), base.chain)
			if err != nil {
				t.Fatal(err)
			}
			err = CopyTree(context.Background(), broot, filepath.Join(plain, "root"))
			release()
			if err != nil {
				t.Fatal(err)
			}
			if err := ApplyTar(context.Background(), filepath.Join(plain, "root"), bytes.NewReader(untgz(t, c.blob))); err != nil {
				t.Fatal(err)
			}
			diffTrees(t, treeOf(t, filepath.Join(plain, "root")), tree)
		})
	}
}

func TestSpecialFiles(t *testing.T) {
	long := strings.Repeat("long-name-", 12) + "ünïcødé-文件"
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			c := build(t, s, "", func(root string) {
				f := fs{t, root}
				f.mkdir("x", 0o755)
				f.write("x/a", "linked", 0o640)
				f.link("x/a", "x/b")
				f.link("x/a", "c")
				f.symlink("/x/a", "x/abs")
				f.symlink("../missing", "x/dangling")
				f.check(unix.Mkfifo(f.p("fifo"), 0o644))
				f.mknod("null", unix.S_IFCHR|0o666, 1, 3)
				f.mknod("blk", unix.S_IFBLK|0o600, 7, 0)
				f.write("xattr", "x", 0o644)
				f.setxattr("xattr", "user.foo", "bar")
				f.mkdir(long, 0o755)
				f.write(long+"/"+long, "deep", 0o644)
				f.write("suid", "s", 0o4755)
				f.fix("x/a", "x/abs", "x/dangling", "x", "fifo", "null", "blk", "xattr", long+"/"+long, long, "suid")
			})
			es := tarEntries(t, untgz(t, c.blob))
			first, _ := findEntry(es, "c")
			if first.typ != '0' || first.data != "linked" {
				t.Errorf("first link c: %+v", first)
			}
			for _, n := range []string{"x/a", "x/b"} {
				if e, _ := findEntry(es, n); e.typ != '1' || e.link != "c" {
					t.Errorf("hardlink %s: %+v", n, e)
				}
			}
			if e, _ := findEntry(es, "x/abs"); e.typ != '2' || e.link != "/x/a" {
				t.Errorf("symlink: %+v", e)
			}
			if e, _ := findEntry(es, "fifo"); e.typ != '6' {
				t.Errorf("fifo: %+v", e)
			}
			if e, _ := findEntry(es, "null"); e.typ != '3' || e.major != 1 || e.minor != 3 || e.mode != 0o666 {
				t.Errorf("char device: %+v", e)
			}
			if e, _ := findEntry(es, "blk"); e.typ != '4' || e.major != 7 {
				t.Errorf("block device: %+v", e)
			}
			if e, _ := findEntry(es, "xattr"); e.xattrs["user.foo"] != "bar" {
				t.Errorf("xattr: %+v", e)
			}
			if e, ok := findEntry(es, long+"/"+long); !ok || e.data != "deep" {
				t.Errorf("long name missing: %q", entryNames(es))
			}
			if e, _ := findEntry(es, "suid"); e.mode != 0o4755 {
				t.Errorf("suid mode %o", e.mode)
			}
			for _, e := range es {
				if strings.HasPrefix(e.name, "trusted.overlay") {
					t.Errorf("overlay xattr leaked: %+v", e)
				}
			}
			// Applying the layer in a fresh store gives the tree back.
			orig := view(t, s, c.chain)
			for _, k2 := range kinds {
				s2 := newSnapshotter(t, k2)
				chain, err := s2.Apply(context.Background(), "", c.layer.DiffID, bytes.NewReader(untgz(t, c.blob)))
				if err != nil {
					t.Fatal(err)
				}
				if chain != c.chain {
					t.Errorf("apply chain %s, want %s", chain, c.chain)
				}
				diffTrees(t, view(t, s2, chain), orig)
			}
		})
	}
}
