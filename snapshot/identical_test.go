package snapshot

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// scenarios are common changes a build step makes over baseTree, with the entries their layer
// must hold. Each gives what it touches (and their dirs) the fixed time, so every run makes the
// same tree; a dir given back the fixed time is unchanged, and is in the layer only as the
// parent of a change.
var scenarios = []struct {
	name   string
	change func(f fs)
	want   []string
}{
	{"add file", func(f fs) { f.write("etc/new", "new", 0o644); f.fix("etc/new", "etc") }, []string{"etc/", "etc/new"}},
	{"add file at top", func(f fs) { f.write("top", "top", 0o644); f.fix("top") }, []string{"top"}},
	{"modify file", func(f fs) { f.write("etc/passwd", "changed", 0o644); f.fix("etc/passwd") },
		[]string{"etc/", "etc/passwd"}},
	{"modify deep file", func(f fs) { f.write("d/sub/c", "changed", 0o644); f.fix("d/sub/c") },
		[]string{"d/", "d/sub/", "d/sub/c"}},
	{"delete file", func(f fs) { f.rm("d/a"); f.fix("d") }, []string{"d/", "d/.wh.a"}},
	{"delete deep file", func(f fs) { f.rm("d/sub/c"); f.fix("d/sub") }, []string{"d/", "d/sub/", "d/sub/.wh.c"}},
	{"delete dir", func(f fs) { f.rm("d/sub"); f.fix("d") }, []string{"d/", "d/.wh.sub"}},
	{"replace dir", func(f fs) {
		f.rm("opq")
		f.mkdir("opq", 0o755)
		f.write("opq/new", "new", 0o644)
		f.fix("opq/new", "opq")
	}, []string{"opq/", "opq/.wh..wh..opq", "opq/new"}},
	{"replace dir by file", func(f fs) { f.rm("tobefile"); f.write("tobefile", "f", 0o644); f.fix("tobefile") },
		[]string{"tobefile"}},
	{"replace file by dir", func(f fs) {
		f.rm("tobedir")
		f.mkdir("tobedir", 0o755)
		f.write("tobedir/x", "x", 0o644)
		f.fix("tobedir/x", "tobedir")
	}, []string{"tobedir/", "tobedir/.wh..wh..opq", "tobedir/x"}},
	{"chmod file", func(f fs) { f.chmod("etc/group", 0o600) }, []string{"etc/", "etc/group"}},
	{"chmod dir", func(f fs) { f.chmod("d/sub", 0o755) }, []string{"d/", "d/sub/"}},
	{"chown file", func(f fs) { f.chown("file", 1000, 1000) }, []string{"file"}},
	// RUN chown 1000:1000 /home/app: the parent is in the layer, unchanged.
	{"chown nested dir", func(f fs) { f.chown("d/sub", 1000, 1000) }, []string{"d/", "d/sub/"}},
	// RUN mkdir -p /d/x/y where /d exists.
	{"mkdir -p", func(f fs) {
		f.mkdir("d/x", 0o755)
		f.mkdir("d/x/y", 0o755)
		f.fix("d/x/y", "d/x", "d")
	}, []string{"d/", "d/x/", "d/x/y/"}},
	{"touch file", func(f fs) { f.check(setTimes(f.p("file"), fixedTime.Add(3600e9), fixedTime)) }, []string{"file"}},
	{"symlink", func(f fs) { f.symlink("../etc/group", "d/grp"); f.fix("d/grp", "d") }, []string{"d/", "d/grp"}},
	{"change symlink", func(f fs) { f.rm("lnk"); f.symlink("etc/group", "lnk"); f.fix("lnk") }, []string{"lnk"}},
	{"hardlink new files", func(f fs) {
		f.write("h1", "h", 0o644)
		f.link("h1", "h2")
		f.fix("h1")
	}, []string{"h1", "h2"}},
	// Overlay copies etc/passwd up to link it; it is unchanged, so only the new name is written.
	{"hardlink to lower file", func(f fs) { f.link("etc/passwd", "etc/passwd2"); f.fix("etc") },
		[]string{"etc/", "etc/passwd2"}},
	{"hardlinks to lower file in new dir", func(f fs) {
		f.mkdir("l", 0o755)
		f.link("file", "l/h1")
		f.link("file", "l/h2")
		f.fix("l")
	}, []string{"l/", "l/h1", "l/h2"}},
	// The RUN sandbox makes a mount stub /etc/hosts, removes it and gives /etc its mtime back:
	// overlay copied /etc up, but nothing changed.
	{"sandbox stub", func(f fs) {
		var st unix.Stat_t
		f.check(unix.Lstat(f.p("etc"), &st))
		f.write("etc/hosts", "", 0o644)
		f.rm("etc/hosts")
		f.check(os.Chtimes(f.p("etc"), time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix())))
	}, []string{}},
	{"xattr", func(f fs) { f.setxattr("file", "user.foo", "bar") }, []string{"file"}},
	{"fifo and device", func(f fs) {
		f.check(unix.Mkfifo(f.p("fifo"), 0o644))
		f.mknod("d/null", unix.S_IFCHR|0o666, 1, 3)
		f.fix("fifo", "d/null", "d")
	}, []string{"d/", "d/null", "fifo"}},
	{"many changes", func(f fs) {
		f.rm("d")
		f.write("etc/passwd", "x", 0o600)
		f.mkdir("new", 0o750)
		f.mkdir("new/deeper", 0o755)
		f.write("new/deeper/f", "f", 0o644)
		f.fix("etc/passwd", "etc", "new/deeper/f", "new/deeper", "new")
	}, []string{".wh.d", "etc/", "etc/passwd", "new/", "new/deeper/", "new/deeper/f"}},
}

// TestOverlayCopyIdentical: both snapshotters write the same bytes for the same changes.
func TestOverlayCopyIdentical(t *testing.T) {
	stores := map[string]Snapshotter{}
	bases := map[string]committed{}
	for _, k := range kinds {
		stores[k] = newSnapshotter(t, k)
		bases[k] = build(t, stores[k], "", func(root string) { baseTree(t, root) })
	}
	if bases[KindOverlay].layer != bases[KindCopy].layer {
		t.Fatalf("base layers differ: %+v %+v", bases[KindOverlay].layer, bases[KindCopy].layer)
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			got := map[string]committed{}
			for _, k := range kinds {
				got[k] = build(t, stores[k], bases[k].chain, func(root string) { sc.change(fs{t, root}) })
			}
			o, c := got[KindOverlay], got[KindCopy]
			for _, k := range kinds {
				if names := entryNames(tarEntries(t, untgz(t, got[k].blob))); !slices.Equal(names, sc.want) {
					t.Errorf("%s layer entries\n got  %q\n want %q", k, names, sc.want)
				}
			}
			if o.layer != c.layer || o.chain != c.chain {
				t.Errorf("layers differ:\n overlay %v\n copy    %v\n%s\n%s", o.layer, c.layer,
					listing(t, untgz(t, o.blob)), listing(t, untgz(t, c.blob)))
			}
			// Both snapshots show the same tree.
			diffTrees(t, view(t, stores[KindCopy], c.chain), view(t, stores[KindOverlay], o.chain))
		})
	}
}

// listing is what GNU tar says of a layer tar.
func listing(t testing.TB, tarb []byte) string {
	p := filepath.Join(t.TempDir(), "l.tar")
	if err := os.WriteFile(p, tarb, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tar", "--full-time", "-tvf", p).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tvf: %v\n%s", err, out)
	}
	return string(out)
}

// TestDeterminism: the same changes in two stores give the same bytes, compressed or not.
func TestDeterminism(t *testing.T) {
	for _, opts := range []CommitOptions{{}, {Level: 6}, {Compression: "uncompressed"}} {
		t.Run(fmt.Sprintf("%s-%d", opts.Compression, opts.Level), func(t *testing.T) {
			var blobs [][]byte
			var layers []Layer
			for range 2 {
				s := newSnapshotter(t, KindOverlay)
				a := prepare(t, s, "")
				baseTree(t, a.Root)
				// Enough data to span several pgzip blocks.
				big := bytes.Repeat([]byte("0123456789abcdef"), 300000)
				f := fs{t, a.Root}
				f.write("big", string(big), 0o644)
				f.fix("big")
				c := commit(t, s, a, opts)
				blobs = append(blobs, c.blob)
				layers = append(layers, c.layer)
			}
			if layers[0] != layers[1] || !bytes.Equal(blobs[0], blobs[1]) {
				t.Errorf("same changes, different layers: %v %v", layers[0], layers[1])
			}
			if opts.Compression == "uncompressed" {
				if layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar" || layers[0].Digest != layers[0].DiffID {
					t.Errorf("uncompressed layer %+v", layers[0])
				}
			}
		})
	}
}
