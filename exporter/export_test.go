package exporter

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"kiln/cache"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarEntries reads a tar file into name -> content.
func tarEntries(t *testing.T, path string) (map[string]string, []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]string{}
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
		names = append(names, h.Name)
	}
	return files, names
}

func TestExportOCIArchive(t *testing.T) {
	skopeo := needTool(t, "skopeo", "skopeo")
	umoci := needTool(t, "umoci", "umoci")
	ctx := context.Background()
	s := openStore(t)
	img, desc := testImage(t, s)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.tar")
	if err := Export(ctx, s, nil, desc, Output{Type: TypeOCI, Dest: out, Tar: true}, []string{"app:v1"}); err != nil {
		t.Fatal(err)
	}
	files, names := tarEntries(t, out)
	if !sort.StringsAreSorted(names) || names[0] != "blobs/" || names[1] != "blobs/sha256/" {
		t.Errorf("entries %v", names)
	}
	if _, ok := files["manifest.json"]; ok {
		t.Error("oci archive has docker's manifest.json")
	}
	if files["oci-layout"] != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %q", files["oci-layout"])
	}
	for _, l := range img.Layers {
		b, _ := s.ReadBlob(l.Digest)
		if files["blobs/sha256/"+l.Digest.Encoded()] != string(b) {
			t.Errorf("layer %s not copied as stored", l.Digest)
		}
	}
	var idx ocispec.Index
	if err := json.Unmarshal([]byte(files["index.json"]), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != desc.Digest ||
		idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "v1" ||
		idx.Manifests[0].Annotations[AnnotationImageName] != "docker.io/library/app:v1" {
		t.Errorf("index.json %s", files["index.json"])
	}

	// skopeo reads it.
	var inspect struct {
		Digest string
		Layers []string
		Os     string
	}
	if err := json.Unmarshal([]byte(run(t, skopeo, "inspect", "oci-archive:"+out)), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Digest != desc.Digest.String() || len(inspect.Layers) != 2 || inspect.Os != "linux" {
		t.Errorf("skopeo inspect: %+v", inspect)
	}

	// umoci unpacks it (from the archive, extracted) and finds our tree.
	layout := filepath.Join(dir, "layout")
	os.Mkdir(layout, 0o755)
	run(t, "tar", "-xf", out, "-C", layout)
	bundle := filepath.Join(dir, "bundle")
	run(t, umoci, "unpack", "--image", layout+":v1", bundle)
	checkTree(t, filepath.Join(bundle, "rootfs"))

	// Byte for byte the same when exported again.
	out2 := filepath.Join(dir, "again.tar")
	if err := Export(ctx, s, nil, desc, Output{Type: TypeOCI, Dest: out2, Tar: true}, []string{"app:v1"}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	if !bytes.Equal(a, b) {
		t.Error("two exports of the same image differ")
	}
}

func TestExportOCIDir(t *testing.T) {
	umoci := needTool(t, "umoci", "umoci")
	skopeo := needTool(t, "skopeo", "skopeo")
	ctx := context.Background()
	s := openStore(t)
	_, desc := testImage(t, s)
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	if err := Export(ctx, s, nil, desc, Output{Type: TypeOCI, Dest: layout, Tar: false}, []string{"app:latest"}); err != nil {
		t.Fatal(err)
	}
	run(t, skopeo, "inspect", "oci:"+layout+":latest")
	bundle := filepath.Join(dir, "bundle")
	run(t, umoci, "unpack", "--image", layout+":latest", bundle)
	checkTree(t, filepath.Join(bundle, "rootfs"))

	// Exporting into the existing layout adds a tag and keeps the first.
	if err := Export(ctx, s, nil, desc, Output{Type: TypeOCI, Dest: layout, Tar: false}, []string{"app:v2"}); err != nil {
		t.Fatal(err)
	}
	tags := strings.Fields(run(t, umoci, "ls", "--layout", layout))
	sort.Strings(tags)
	if strings.Join(tags, " ") != "latest v2" {
		t.Errorf("umoci ls = %v", tags)
	}
	// A directory that is not a layout is refused, untouched.
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "keep"), []byte("x"), 0o644)
	if err := Export(ctx, s, nil, desc, Output{Type: TypeOCI, Dest: other, Tar: false}, nil); err == nil {
		t.Error("export into a non-layout directory succeeded")
	}
	if entries, _ := os.ReadDir(other); len(entries) != 1 {
		t.Errorf("non-layout directory changed: %v", entries)
	}
}

func TestExportDockerArchive(t *testing.T) {
	skopeo := needTool(t, "skopeo", "skopeo")
	ctx := context.Background()
	s := openStore(t)
	img, desc := testImage(t, s)
	dir := t.TempDir()
	out := filepath.Join(dir, "x.tar")
	if err := Export(ctx, s, nil, desc, Output{Type: TypeDocker, Dest: out, Tar: true}, []string{"app:latest", "127.0.0.1:5000/app:v1"}); err != nil {
		t.Fatal(err)
	}
	files, _ := tarEntries(t, out)
	var mj []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal([]byte(files["manifest.json"]), &mj); err != nil {
		t.Fatal(err)
	}
	m, _, _ := manifestFiles(s, desc)
	if len(mj) != 1 || mj[0].Config != "blobs/sha256/"+m.Digest.Encoded() ||
		strings.Join(mj[0].RepoTags, ",") != "app:latest,127.0.0.1:5000/app:v1" || len(mj[0].Layers) != 2 ||
		mj[0].Layers[1] != "blobs/sha256/"+img.Layers[1].Digest.Encoded() {
		t.Errorf("manifest.json %s", files["manifest.json"])
	}
	if _, ok := files["index.json"]; !ok {
		t.Error("docker archive lacks the OCI index.json")
	}
	var inspect struct {
		Layers []string
		Env    []string
	}
	if err := json.Unmarshal([]byte(run(t, skopeo, "inspect", "docker-archive:"+out)), &inspect); err != nil {
		t.Fatal(err)
	}
	if len(inspect.Layers) != 2 || len(inspect.Env) != 1 {
		t.Errorf("skopeo inspect docker-archive: %+v", inspect)
	}

	t.Run("podman load", func(t *testing.T) {
		podman := needTool(t, "podman", "podman")
		// podman refuses a run root longer than 50 characters: t.TempDir() paths are too long.
		pr, err := os.MkdirTemp("/tmp", "pm")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(pr) })
		args := []string{"--root", filepath.Join(pr, "root"), "--runroot", filepath.Join(pr, "run"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}
		if out, err := exec.Command(podman, append(args, "info")...).CombinedOutput(); err != nil {
			t.Skipf("podman cannot run here: %v\n%s", err, out)
		}
		t.Cleanup(func() { exec.Command(podman, append(args, "system", "reset", "--force")...).Run() })
		run(t, podman, append(args, "load", "-i", out)...)
		images := run(t, podman, append(args, "images", "--format", "{{.Repository}}:{{.Tag}}")...)
		// podman names a short RepoTag from a docker archive localhost/app, as for `docker save` output.
		if !strings.Contains(images, "/app:latest") || !strings.Contains(images, "127.0.0.1:5000/app:v1") {
			t.Errorf("podman images after load:\n%s", images)
		}
	})
}

func TestExportLocal(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	_, desc := testImage(t, s)
	dir := t.TempDir()
	dest := filepath.Join(dir, "rootfs")
	if err := Export(ctx, s, nil, desc, Output{Type: TypeLocal, Dest: dest}, nil); err != nil {
		t.Fatal(err)
	}
	checkTree(t, dest)
	if uid := run(t, "stat", "-c", "%u", filepath.Join(dest, "home/app/note")); strings.TrimSpace(uid) != "1000" {
		t.Errorf("owner of home/app/note = %s, want 1000", uid)
	}
	// Into an existing directory: the image's entries are replaced, other files stay.
	os.WriteFile(filepath.Join(dest, "unrelated"), []byte("keep"), 0o644)
	os.WriteFile(filepath.Join(dest, "etc/stale"), []byte("gone"), 0o644)
	if err := Export(ctx, s, nil, desc, Output{Type: TypeLocal, Dest: dest}, nil); err != nil {
		t.Fatal(err)
	}
	checkTree(t, dest)
	if b, _ := os.ReadFile(filepath.Join(dest, "unrelated")); string(b) != "keep" {
		t.Error("unrelated file removed")
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/stale")); !os.IsNotExist(err) {
		t.Error("etc/ was merged, not replaced")
	}
	// Nothing temporary left next to dest.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left beside dest: %v", entries)
	}
}

func TestExportRootfsTar(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	_, desc := testImage(t, s)
	dir := t.TempDir()
	out := filepath.Join(dir, "rootfs.tar")
	if err := Export(ctx, s, nil, desc, Output{Type: TypeTar, Dest: out}, nil); err != nil {
		t.Fatal(err)
	}
	files, names := tarEntries(t, out)
	if !sort.StringsAreSorted(names) {
		t.Errorf("tar not in order: %v", names)
	}
	// etc/hard and etc/motd are one inode: the first in order carries the content.
	if files["etc/hard"] != "second\n" || files["bin/hello"] == "" {
		t.Errorf("tar entries %v", names)
	}
	x := filepath.Join(dir, "x")
	os.Mkdir(x, 0o755)
	run(t, "tar", "-xpf", out, "-C", x)
	checkTree(t, x)
	uid := run(t, "stat", "-c", "%u", filepath.Join(x, "home/app/note"))
	if strings.TrimSpace(uid) != "1000" {
		t.Errorf("owner of home/app/note = %s, want 1000", uid)
	}

	// To stdout.
	var buf bytes.Buffer
	if err := Export(ctx, s, nil, desc, Output{Type: TypeTar, Dest: "-", Stdout: &buf}, nil); err != nil {
		t.Fatal(err)
	}
	stdout := filepath.Join(dir, "stdout.tar")
	os.WriteFile(stdout, buf.Bytes(), 0o644)
	got, gotNames := tarEntries(t, stdout)
	if strings.Join(gotNames, " ") != strings.Join(names, " ") || got["bin/hello"] != files["bin/hello"] {
		t.Errorf("tar to stdout differs from tar to file: %v", gotNames)
	}
	// ApplyTar restores modification times, so the tar is the same bytes every time.
	if a, _ := os.ReadFile(out); !bytes.Equal(a, buf.Bytes()) {
		t.Error("two tar exports of the same image differ")
	}
}

func TestExportCorruptBlobLeavesNothing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	img, desc := testImage(t, s)
	p := s.BlobPath(img.Layers[0].Digest)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	dir := t.TempDir()
	for _, out := range []Output{
		{Type: TypeOCI, Dest: filepath.Join(dir, "o.tar"), Tar: true},
		{Type: TypeDocker, Dest: filepath.Join(dir, "d.tar"), Tar: true},
		{Type: TypeOCI, Dest: filepath.Join(dir, "layout"), Tar: false},
		{Type: TypeLocal, Dest: filepath.Join(dir, "rootfs")},
		{Type: TypeTar, Dest: filepath.Join(dir, "r.tar")},
	} {
		err := Export(ctx, s, nil, desc, out, []string{"app"})
		if err == nil {
			t.Errorf("%s: export of a corrupt blob succeeded", out)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		var n []string
		for _, e := range entries {
			n = append(n, e.Name())
		}
		t.Errorf("failed exports left %v", n)
	}
}

func TestExportImageTags(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	_, desc := testImage(t, s)
	if err := Export(ctx, s, nil, desc, Output{Type: TypeImage, Attrs: map[string]string{}}, []string{"app:v1", "app:v2"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"app:v1", "docker.io/library/app:v2"} {
		if got, err := s.Resolve(n); err != nil || got.Digest != desc.Digest {
			t.Errorf("Resolve(%s) = %v, %v", n, got.Digest, err)
		}
	}
	if err := Export(ctx, s, nil, desc, Output{Type: TypeImage}, nil); err == nil {
		t.Error("type=image without a name succeeded")
	}
	if _, err := s.Resolve("app:v3"); !errors.Is(err, cache.ErrNotFound) {
		t.Error(err)
	}
}
