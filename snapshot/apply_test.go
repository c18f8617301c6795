package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// TestApplyWhiteouts applies a hand-made layer with every kind of whiteout over a base and checks
// the tree both snapshotters show.
func TestApplyWhiteouts(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			ctx := context.Background()
			baseTar, baseID := newTar().dir(t, "a/").file(t, "a/keep", "k").file(t, "a/gone", "g").
				dir(t, "b/").file(t, "b/x", "x").dir(t, "b/sub/").file(t, "b/sub/y", "y").
				dir(t, "c/").file(t, "c/z", "z").file(t, "f", "f").bytes(t)
			base, err := s.Apply(ctx, "", baseID, bytes.NewReader(baseTar))
			if err != nil {
				t.Fatal(err)
			}
			top, topID := newTar().
				dir(t, "a/").file(t, "a/.wh.gone", "").
				dir(t, "b/").file(t, "b/.wh..wh..opq", "").file(t, "b/new", "n").
				file(t, ".wh.c", "").
				file(t, ".wh.f", "").dir(t, "f/").file(t, "f/inside", "i"). // file replaced by a dir
				file(t, "implicit/dir/file", "deep").                       // parents not in the tar
				bytes(t)
			chain, err := s.Apply(ctx, base, topID, bytes.NewReader(top))
			if err != nil {
				t.Fatal(err)
			}
			if chain != ChainID(base, topID) {
				t.Errorf("chain %s", chain)
			}
			tree := view(t, s, chain)
			var names []string
			for k := range tree {
				names = append(names, k)
			}
			want := map[string]bool{"a": true, "a/keep": true, "b": true, "b/new": true, "f": true, "f/inside": true,
				"implicit": true, "implicit/dir": true, "implicit/dir/file": true}
			for k := range tree {
				if !want[k] {
					t.Errorf("unexpected %s", k)
				}
			}
			for k := range want {
				if _, ok := tree[k]; !ok {
					t.Errorf("missing %s", k)
				}
			}
			// Applying again does not read the tar.
			again, err := s.Apply(ctx, base, topID, errReader{})
			if err != nil || again != chain {
				t.Errorf("second apply: %s, %v", again, err)
			}
			// A tar that does not match its diff ID is refused and leaves nothing.
			if _, err := s.Apply(ctx, "", digest.FromString("not this tar"), bytes.NewReader(top)); err == nil {
				t.Error("apply with a wrong diff ID succeeded")
			}
			infos, err := s.List(ctx)
			if err != nil || len(infos) != 2 {
				t.Errorf("List after a failed apply: %v %v", infos, err)
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read when it should not") }

// TestApplyTarUnsafe: entries that try to leave the root fail or stay inside.
func TestApplyTarUnsafe(t *testing.T) {
	cases := []struct {
		name    string
		tar     func(t *testing.T) []byte
		wantErr bool
	}{
		{"dotdot", func(t *testing.T) []byte {
			b, _ := newTar().file(t, "../escape", "x").bytes(t)
			return b
		}, true},
		{"dotdot inside", func(t *testing.T) []byte {
			b, _ := newTar().file(t, "a/../../escape", "x").bytes(t)
			return b
		}, true},
		{"absolute", func(t *testing.T) []byte {
			b, _ := newTar().file(t, "/escape", "x").bytes(t)
			return b
		}, false},
		{"through absolute symlink", func(t *testing.T) []byte {
			b, _ := newTar().add(t, tar.Header{Typeflag: tar.TypeSymlink, Name: "evil", Linkname: "/"}, "").
				file(t, "evil/escape", "x").bytes(t)
			return b
		}, false},
		{"through relative symlink", func(t *testing.T) []byte {
			b, _ := newTar().add(t, tar.Header{Typeflag: tar.TypeSymlink, Name: "evil", Linkname: "../../../.."}, "").
				file(t, "evil/escape", "x").bytes(t)
			return b
		}, false},
		{"hardlink outside", func(t *testing.T) []byte {
			b, _ := newTar().add(t, tar.Header{Typeflag: tar.TypeLink, Name: "l", Linkname: "../outside"}, "").bytes(t)
			return b
		}, true},
		{"whiteout outside", func(t *testing.T) []byte {
			b, _ := newTar().file(t, "../.wh.outside", "").bytes(t)
			return b
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			root := filepath.Join(top, "a", "b", "root")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			outside := filepath.Join(top, "a", "b", "outside")
			if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := ApplyTar(context.Background(), root, bytes.NewReader(tc.tar(t)))
			if tc.wantErr && err == nil {
				t.Error("no error")
			}
			if !tc.wantErr && err != nil {
				t.Errorf("error: %v", err)
			}
			if err != nil && tc.wantErr && !errors.Is(err, ErrUnsafePath) && !strings.Contains(err.Error(), "no such file") {
				t.Errorf("error is not ErrUnsafePath: %v", err)
			}
			// Nothing was written outside root.
			filepath.Walk(top, func(p string, _ os.FileInfo, err error) error {
				if err == nil && strings.Contains(filepath.Base(p), "escape") && !strings.HasPrefix(p, root+"/") {
					t.Errorf("written outside: %s", p)
				}
				return nil
			})
			for _, p := range []string{"/escape", filepath.Join(top, "escape"), filepath.Join(top, "a", "escape")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("written outside: %s", p)
				}
			}
			if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
				t.Errorf("file outside changed: %q %v", b, err)
			}
			if !tc.wantErr && tc.name != "dotdot" {
				if _, err := os.Stat(filepath.Join(root, "escape")); err != nil {
					t.Errorf("entry not kept inside: %v", err)
				}
			}
		})
	}
}

// TestApplyTarPlain: ApplyTar onto a full tree deletes what whiteouts name and keeps attributes.
func TestApplyTarPlain(t *testing.T) {
	root := t.TempDir()
	f := fs{t, root}
	f.mkdir("d", 0o755)
	f.write("d/old", "o", 0o644)
	f.write("gone", "g", 0o644)
	f.mkdir("dir", 0o755)
	f.write("dir/x", "x", 0o644)
	layer, _ := newTar().
		dir(t, "d/").file(t, "d/.wh..wh..opq", "").file(t, "d/new", "n").
		file(t, ".wh.gone", "").
		file(t, "dir", "now a file").
		add(t, tar.Header{Typeflag: tar.TypeReg, Name: "owned", Uid: 1000, Gid: 1001, Mode: 0o4750,
			PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}}, "o").
		add(t, tar.Header{Typeflag: tar.TypeLink, Name: "owned2", Linkname: "owned"}, "").
		bytes(t)
	if err := ApplyTar(context.Background(), root, bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	tree := treeOf(t, root)
	for _, gone := range []string{"d/old", "gone", "dir/x"} {
		if _, ok := tree[gone]; ok {
			t.Errorf("%s still there", gone)
		}
	}
	if !strings.Contains(tree["d/new"], `data="n"`) || !strings.Contains(tree["dir"], "now a file") {
		t.Errorf("tree %v", tree)
	}
	if got := tree["owned"]; !strings.HasPrefix(got, "mode=104750 uid=1000 gid=1001") || !strings.Contains(got, `user.k="v"`) {
		t.Errorf("owned: %s", got)
	}
	if !strings.Contains(tree["owned2"], "linkto=owned") {
		t.Errorf("owned2: %s", tree["owned2"])
	}
}

// TestApplyHardlinkToLower: a layer linking to a file of a lower layer gets it copied up.
func TestApplyHardlinkToLower(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			s := newSnapshotter(t, kind)
			ctx := context.Background()
			b1, d1 := newTar().dir(t, "usr/").dir(t, "usr/bin/").file(t, "usr/bin/tool", "tool").bytes(t)
			base, err := s.Apply(ctx, "", d1, bytes.NewReader(b1))
			if err != nil {
				t.Fatal(err)
			}
			b2, d2 := newTar().add(t, tar.Header{Typeflag: tar.TypeLink, Name: "tool2", Linkname: "usr/bin/tool"}, "").bytes(t)
			chain, err := s.Apply(ctx, base, d2, bytes.NewReader(b2))
			if err != nil {
				t.Fatal(err)
			}
			tree := view(t, s, chain)
			if !strings.Contains(tree["tool2"], `data="tool"`) || !strings.Contains(tree["usr/bin/tool"], `data="tool"`) {
				t.Errorf("tree %v", tree)
			}
		})
	}
}

// TestCompress: compressing a committed layer's tar gives back the same blob.
func TestCompress(t *testing.T) {
	s := newSnapshotter(t, KindOverlay)
	c := build(t, s, "", func(root string) { baseTree(t, root) })
	var out bytes.Buffer
	l, err := Compress(context.Background(), bytes.NewReader(untgz(t, c.blob)), &out, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l != c.layer || !bytes.Equal(out.Bytes(), c.blob) {
		t.Errorf("Compress gave %+v, commit gave %+v", l, c.layer)
	}
}
