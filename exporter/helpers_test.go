package exporter

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"kiln/cache"
	"kiln/snapshot"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tfile is one entry of a test layer.
type tfile struct {
	name, body, link string
	mode             int64
	typ              byte
	uid              int
}

// writeLayer stores a gzip layer made of files and returns it.
func writeLayer(t *testing.T, s *cache.Store, files []tfile) snapshot.Layer {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Typeflag: f.typ, Linkname: f.link, ModTime: mtime, Uid: f.uid, Gid: f.uid}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(f.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	desc, err := s.WriteBlob(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return snapshot.Layer{Digest: desc.Digest, DiffID: digest.FromBytes(raw.Bytes()), Size: desc.Size, MediaType: desc.MediaType}
}

func openStore(t *testing.T) *cache.Store {
	t.Helper()
	s, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testImage commits a two-layer image: the second layer changes a file, deletes one with a
// whiteout and adds a symlink and a hard link.
func testImage(t *testing.T, s *cache.Store) (Image, ocispec.Descriptor) {
	t.Helper()
	l1 := writeLayer(t, s, []tfile{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/hello", body: "#!/bin/sh\necho hello\n", mode: 0o755},
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/motd", body: "first\n"},
		{name: "etc/old", body: "to be deleted\n"},
		{name: "home/", typ: tar.TypeDir},
		{name: "home/app/", typ: tar.TypeDir, uid: 1000},
		{name: "home/app/note", body: "mine\n", uid: 1000},
	})
	l2 := writeLayer(t, s, []tfile{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/motd", body: "second\n"},
		{name: "etc/.wh.old", typ: tar.TypeReg},
		{name: "etc/link", typ: tar.TypeSymlink, link: "motd"},
		{name: "etc/hard", typ: tar.TypeLink, link: "etc/motd"},
	})
	img := Image{Layers: []snapshot.Layer{l1, l2}}
	img.Config.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	img.Config.Config.Cmd = []string{"/bin/hello"}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	img.Config.Created = &created
	img.Config.History = []ocispec.History{{Created: &created, CreatedBy: "layer 1"}, {Created: &created, CreatedBy: "layer 2"}}
	desc, err := Commit(context.Background(), s, img)
	if err != nil {
		t.Fatal(err)
	}
	return img, desc
}

// wantTree is the root file system of testImage.
var wantTree = map[string]string{
	"bin/hello":     "#!/bin/sh\necho hello\n",
	"etc/motd":      "second\n",
	"etc/hard":      "second\n",
	"home/app/note": "mine\n",
}

// checkTree checks a root file system made from testImage.
func checkTree(t *testing.T, root string) {
	t.Helper()
	for p, want := range wantTree {
		b, err := os.ReadFile(root + "/" + p)
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if _, err := os.Lstat(root + "/etc/old"); !os.IsNotExist(err) {
		t.Errorf("etc/old (whited out) exists: %v", err)
	}
	if l, err := os.Readlink(root + "/etc/link"); err != nil || l != "motd" {
		t.Errorf("etc/link -> %q, %v", l, err)
	}
	if fi, err := os.Stat(root + "/bin/hello"); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/hello mode: %v, %v", fi, err)
	}
}

// needTool finds a command, installing its Debian package if it is missing; it skips the test
// only when neither works.
func needTool(t *testing.T, cmd, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(cmd); err == nil {
		return p
	}
	out, err := exec.Command("apt-get", "install", "-y", "-qq", pkg).CombinedOutput()
	if p, err2 := exec.LookPath(cmd); err2 == nil {
		return p
	}
	t.Skipf("%s is missing and `apt-get install %s` failed: %v\n%s", cmd, pkg, err, out)
	return ""
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
