package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	kilnrt "kiln/runtime"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// These tests run kiln as users do: the test binary re-executes itself as kiln (see TestMain),
// against a real registry (docker-registry), and check the images with skopeo and umoci.

func TestMain(m *testing.M) {
	if kilnrt.Reexec() {
		return
	}
	if os.Getenv("KILN_TEST_AS_KILN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// kilnEnv is one state directory and a way to run kiln on it.
type kilnEnv struct {
	t    *testing.T
	root string
}

func newKilnEnv(t *testing.T) *kilnEnv {
	root, err := os.MkdirTemp("/var/tmp", "kiln-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return &kilnEnv{t: t, root: root}
}

// run runs kiln with args and returns its stdout and stderr.
func (k *kilnEnv) run(args ...string) (string, string, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "KILN_TEST_AS_KILN=1", "KILN_ROOT="+k.root)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (k *kilnEnv) mustRun(args ...string) (string, string) {
	k.t.Helper()
	out, errs, err := k.run(args...)
	if err != nil {
		k.t.Fatalf("kiln %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errs)
	}
	return out, errs
}

func need(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/test.sh installs it): %v", tool, err)
		}
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startRegistry starts docker-registry on a free loopback port, storing in a temp dir.
func startRegistry(t *testing.T) string {
	need(t, "docker-registry")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	yml := fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\nlog:\n  level: error\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfg)
	var logb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 100; i++ {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("registry did not start: %s", logb.String())
	return ""
}

// buildBusybox builds the busybox base with kiln and pushes it to the registry at addr.
func buildBusybox(t *testing.T, k *kilnEnv, addr string) {
	ctx := filepath.Join(t.TempDir(), "busybox")
	runTool(t, "../../scripts/busybox-context.sh", ctx)
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	k.mustRun("build", "-q", "-t", "busybox:latest", "-o", "type=oci,dest="+archive, ctx)
	runTool(t, "skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci-archive:"+archive, "docker://"+addr+"/busybox:latest")
}

var writingRe = regexp.MustCompile(`writing image (sha256:[0-9a-f]{64}) \((\d+) of (\d+) steps cached\)`)

// built returns the manifest digest, cached steps and steps of a build's progress output.
func built(t *testing.T, stderr string) (string, string, string) {
	t.Helper()
	m := writingRe.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no 'writing image' line in:\n%s", stderr)
	}
	return m[1], m[2], m[3]
}

func TestTwoStageFromRegistry(t *testing.T) {
	need(t, "skopeo", "umoci")
	addr := startRegistry(t)
	buildBusybox(t, newKilnEnv(t), addr)

	k := newKilnEnv(t) // a fresh state directory: the base comes from the registry
	out := t.TempDir()
	archive := filepath.Join(out, "out.tar")
	ctxDir, _ := filepath.Abs("../../testdata/e2e/twostage")
	args := []string{"build", "--progress", "plain", "--build-arg", "REGISTRY=" + addr, "-t", "twostage:latest",
		"-o", "type=oci,dest=" + archive, ctxDir}
	_, stderr := k.mustRun(args...)
	digest1, cached1, total := built(t, stderr)
	if cached1 != "0" {
		t.Errorf("first build: %s steps cached, want 0", cached1)
	}

	// skopeo accepts the archive, and it names the manifest kiln reported.
	var info struct{ Digest string }
	if err := json.Unmarshal([]byte(runTool(t, "skopeo", "inspect", "oci-archive:"+archive)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != digest1 {
		t.Errorf("skopeo sees %s, kiln wrote %s", info.Digest, digest1)
	}

	// umoci unpacks it to the expected tree.
	layout := filepath.Join(out, "layout")
	untar(t, archive, layout)
	index := readJSON[ocispec.Index](t, filepath.Join(layout, "index.json"))
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(index.Manifests))
	}
	ref := index.Manifests[0].Annotations[ocispec.AnnotationRefName]
	if ref == "" {
		t.Fatalf("index.json has no ref name: %+v", index.Manifests[0].Annotations)
	}
	bundle := filepath.Join(out, "bundle")
	runTool(t, "umoci", "unpack", "--image", layout+":"+ref, bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	checkTree(t, rootfs)

	// The config, as Docker writes it.
	manifest := readJSON[ocispec.Manifest](t, blobPath(layout, index.Manifests[0].Digest.String()))
	var cfg struct {
		Config struct {
			Env          []string
			Cmd          []string
			Entrypoint   []string
			WorkingDir   string
			User         string
			Labels       map[string]string
			ExposedPorts map[string]struct{}
		} `json:"config"`
		History []ocispec.History `json:"history"`
	}
	raw, err := os.ReadFile(blobPath(layout, manifest.Config.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	wantEnv := []string{"PATH=/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP_HOME=/app"}
	if strings.Join(c.Env, "|") != strings.Join(wantEnv, "|") {
		t.Errorf("Env %q, want %q", c.Env, wantEnv)
	}
	if strings.Join(c.Cmd, " ") != "serve" || strings.Join(c.Entrypoint, " ") != "/app/app.sh" {
		t.Errorf("Cmd %q Entrypoint %q", c.Cmd, c.Entrypoint)
	}
	if c.WorkingDir != "/app" || c.User != "app" {
		t.Errorf("WorkingDir %q User %q", c.WorkingDir, c.User)
	}
	if c.Labels["org.opencontainers.image.title"] != "twostage" || c.Labels["maintainer"] != "kiln" {
		t.Errorf("Labels %v", c.Labels)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("ExposedPorts %v", c.ExposedPorts)
	} else if _, ok := c.ExposedPorts["9090/udp"]; !ok {
		t.Errorf("ExposedPorts %v", c.ExposedPorts)
	}
	layersWithContent := 0
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			layersWithContent++
		}
	}
	if layersWithContent != len(manifest.Layers) {
		t.Errorf("%d history entries with layers, %d layers", layersWithContent, len(manifest.Layers))
	}

	// The deleting RUN's layer holds a whiteout for /bin/vi.
	if !layerHas(t, layout, manifest, "bin/.wh.vi") {
		t.Error("no layer has the whiteout bin/.wh.vi")
	}

	// The same build again: every step cached, the same manifest.
	start := time.Now()
	_, stderr = k.mustRun(args...)
	t.Logf("cached rebuild took %v", time.Since(start))
	digest2, cached2, total2 := built(t, stderr)
	if digest2 != digest1 || cached2 != total2 || total2 != total {
		t.Errorf("rebuild: %s with %s of %s steps cached; first build %s with %s steps", digest2, cached2, total2, digest1, total)
	}
}

// checkTree checks the unpacked root file system of testdata/e2e/twostage.
func checkTree(t *testing.T, rootfs string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(rootfs, "bin/vi")); err == nil {
		t.Error("/bin/vi was deleted but is in the image")
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "bin/sh")); err != nil {
		t.Errorf("/bin/sh: %v", err)
	}
	type want struct {
		path    string
		mode    os.FileMode
		uid     uint32
		content string
	}
	for _, w := range []want{
		{"app/app.sh", 0o750, 0, "#!/bin/sh\necho \"app $1: $(cat /app/version.txt)\"\n"},
		{"app/version.txt", 0o644, 0, "version 1.0\n"},
		{"app/config/app.conf", 0o644, 1000, "port=8080\n"},
		{"app/config", os.ModeDir | 0o755, 1000, ""},
		{"app/data", os.ModeDir | 0o755, 1000, ""},
		{"app/data/owner.txt", 0o644, 1000, "written by app\n"},
	} {
		fi, err := os.Lstat(filepath.Join(rootfs, w.path))
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != w.mode || st.Uid != w.uid || st.Gid != w.uid {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", w.path, fi.Mode(), st.Uid, st.Gid, w.mode, w.uid, w.uid)
		}
		if w.content != "" {
			if b, _ := os.ReadFile(filepath.Join(rootfs, w.path)); string(b) != w.content {
				t.Errorf("%s: content %q", w.path, b)
			}
		}
	}
	a, err1 := os.Lstat(filepath.Join(rootfs, "app/shared.txt"))
	b, err2 := os.Lstat(filepath.Join(rootfs, "app/shared-hardlink.txt"))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("shared-hardlink.txt is not a hard link of shared.txt (%v, %v)", err1, err2)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "app/current")); err != nil || target != "/app/version.txt" {
		t.Errorf("app/current -> %q (%v)", target, err)
	}
}

func blobPath(layout, digest string) string {
	return filepath.Join(layout, "blobs", strings.Replace(digest, ":", "/", 1))
}

func readJSON[T any](t *testing.T, path string) T {
	t.Helper()
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func untar(t *testing.T, archive, dest string) {
	t.Helper()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	runTool(t, "tar", "-xf", archive, "-C", dest)
}

// layerHas reports whether any layer of manifest holds an entry named name.
func layerHas(t *testing.T, layout string, m ocispec.Manifest, name string) bool {
	t.Helper()
	for _, l := range m.Layers {
		f, err := os.Open(blobPath(layout, l.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			if strings.TrimPrefix(h.Name, "./") == name {
				f.Close()
				return true
			}
		}
		f.Close()
	}
	return false
}
