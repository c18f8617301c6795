package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runStdin runs kiln with stdin and returns stdout and stderr.
func (k *kilnEnv) runStdin(stdin []byte, args ...string) (string, string, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "KILN_TEST_AS_KILN=1", "KILN_ROOT="+k.root)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func inspectConfig(t *testing.T, k *kilnEnv, ref string) map[string]any {
	t.Helper()
	raw, _ := k.mustRun("inspect", ref)
	var insp struct {
		Config struct {
			Config map[string]any `json:"config"`
		}
	}
	if err := json.Unmarshal([]byte(raw), &insp); err != nil {
		t.Fatalf("inspect: %v\n%s", err, raw)
	}
	return insp.Config.Config
}

func TestStdinInputs(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "file.txt"), []byte("from the context\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// -f -: the Dockerfile on standard input, the context a directory.
	df := "FROM busybox:latest\nCOPY file.txt /file.txt\nRUN cat /file.txt > /copy.txt\n"
	if out, errs, err := k.runStdin([]byte(df), "build", "-q", "-t", "stdin-df", "-f", "-", ctx); err != nil {
		t.Fatalf("-f -: %v\n%s%s", err, out, errs)
	}
	out, _ := k.mustRun("run", "stdin-df", "cat", "/copy.txt")
	if out != "from the context\n" {
		t.Errorf("-f -: got %q", out)
	}
	// "-" as the context: a tar archive with the Dockerfile in it.
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	archive, err := exec.Command("tar", "-C", ctx, "-czf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if out, errs, err := k.runStdin(archive, "build", "-q", "-t", "stdin-ctx", "-"); err != nil {
		t.Fatalf("context -: %v\n%s%s", err, out, errs)
	}
	if out, _ := k.mustRun("run", "stdin-ctx", "cat", "/copy.txt"); out != "from the context\n" {
		t.Errorf("context -: got %q", out)
	}
	// "-" as the context: a Dockerfile alone, no context.
	if out, errs, err := k.runStdin([]byte("FROM busybox:latest\nRUN echo alone > /alone\n"), "build", "-q", "-t", "stdin-alone", "-"); err != nil {
		t.Fatalf("Dockerfile as context -: %v\n%s%s", err, out, errs)
	}
	if out, _ := k.mustRun("run", "stdin-alone", "cat", "/alone"); out != "alone\n" {
		t.Errorf("Dockerfile as context -: got %q", out)
	}
}

func TestLabelsAndBuildContexts(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	// An OCI layout of busybox, for oci-layout://.
	layout := filepath.Join(t.TempDir(), "layout")
	k.mustRun("build", "-q", "-t", "from-layout:v1", "-o", "type=oci,dest="+layout+",tar=false", "../../testdata/example")
	extra := t.TempDir()
	if err := os.WriteFile(filepath.Join(extra, "extra.txt"), []byte("extra context\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.TempDir()
	df := `FROM base AS replaced
RUN echo replaced-stage > /stage.txt

FROM notpulled:1.0
COPY --from=extra extra.txt /extra.txt
COPY --from=layoutimg /app/built.txt /built.txt
COPY --from=replaced /bin/busybox /from-base-context
`
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	k.mustRun("build", "-q", "-t", "contexts",
		"--label", "org.example.a=1", "--label", "org.example.b=two",
		"--build-context", "base=docker-image://busybox:latest",
		"--build-context", "notpulled:1.0=docker-image://busybox:latest",
		"--build-context", "extra="+extra,
		"--build-context", "layoutimg=oci-layout://"+layout+":v1",
		ctx)
	for path, want := range map[string]string{"/extra.txt": "extra context\n"} {
		if out, _ := k.mustRun("run", "contexts", "cat", path); out != want {
			t.Errorf("%s: %q, want %q", path, out, want)
		}
	}
	if out, _ := k.mustRun("run", "contexts", "cat", "/built.txt"); !strings.HasPrefix(out, "built by kiln") {
		t.Errorf("/built.txt from the oci layout: %q", out)
	}
	labels, _ := inspectConfig(t, k, "contexts")["Labels"].(map[string]any)
	if labels["org.example.a"] != "1" || labels["org.example.b"] != "two" {
		t.Errorf("labels %v", labels)
	}
}

func TestNoCacheFilter(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	ctx := t.TempDir()
	df := "FROM busybox:latest AS a\nRUN echo a > /a\nFROM busybox:latest AS b\nRUN echo b > /b\nFROM busybox:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	k.mustRun("build", "--progress", "plain", ctx)
	_, stderr := k.mustRun("build", "--progress", "plain", "--no-cache-filter", "b", ctx)
	res := stepResults(stderr)
	if res["RUN echo a > /a"] != "CACHED" || res["RUN echo b > /b"] != "DONE" {
		t.Errorf("with --no-cache-filter b: %v", res)
	}
}

// TestCheck: `kiln build --check` on a Dockerfile that breaks several rules prints what
// `docker build --check` prints for it (recorded from BuildKit in testdata/checks) and exits 1;
// a clean Dockerfile passes.
func TestCheck(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	dir, _ := filepath.Abs("../../testdata/checks/several-rules")
	want, err := os.ReadFile(filepath.Join(dir, "expected.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out, errs, err := k.run("build", "--check", dir)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("kiln build --check exited with %v, want status 1\n%s", err, errs)
	}
	header, body, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(header, "Check complete, ") || !strings.Contains(header, "warnings have been found") {
		t.Errorf("first line %q", header)
	}
	if body != string(want) {
		t.Errorf("kiln build --check printed:\n%s\nBuildKit printed:\n%s", body, want)
	}
	clean := t.TempDir()
	if err := os.WriteFile(filepath.Join(clean, "Dockerfile"), []byte("FROM busybox:latest\nRUN [\"true\"]\nCMD [\"sh\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = k.mustRun("build", "--check", clean)
	if strings.TrimSpace(out) != "Check complete, no warnings found." {
		t.Errorf("clean Dockerfile: %q", out)
	}
}
