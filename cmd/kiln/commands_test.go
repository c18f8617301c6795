package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// localBusybox builds the busybox base into k's store as busybox:latest.
func localBusybox(t *testing.T, k *kilnEnv) {
	ctx := filepath.Join(t.TempDir(), "busybox")
	runTool(t, "../../scripts/busybox-context.sh", ctx)
	k.mustRun("build", "-q", "-t", "busybox:latest", ctx)
}

// copyDir copies a test context so that a test may change it.
func copyDir(t *testing.T, src string) string {
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	runTool(t, "cp", "-a", src, dst)
	return dst
}

func TestOutputs(t *testing.T) {
	need(t, "skopeo")
	k := newKilnEnv(t)
	localBusybox(t, k)
	out := t.TempDir()
	ctx, _ := filepath.Abs("../../testdata/example")
	layoutDir := filepath.Join(out, "layout")
	dockerTar := filepath.Join(out, "docker.tar")
	rootfs := filepath.Join(out, "rootfs")
	rootTar := filepath.Join(out, "rootfs.tar")
	k.mustRun("build", "-q", "-t", "example:v1",
		"-o", "type=oci,dest="+layoutDir+",tar=false",
		"-o", "type=docker,dest="+dockerTar,
		"-o", "type=local,dest="+rootfs,
		"-o", "type=tar,dest="+rootTar, ctx)

	runTool(t, "skopeo", "inspect", "oci:"+layoutDir)
	var info struct{ RepoTags []string }
	inspect := runTool(t, "skopeo", "inspect", "docker-archive:"+dockerTar)
	if err := json.Unmarshal([]byte(inspect), &info); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "app/built.txt")); err != nil || !strings.HasPrefix(string(b), "built by kiln") {
		t.Errorf("local output: app/built.txt %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "app/hello.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("local output: app/hello.sh %v %v", fi, err)
	}
	list := runTool(t, "tar", "-tf", rootTar)
	if !strings.Contains(list, "app/hello.sh") || !strings.Contains(list, "bin/busybox") {
		t.Errorf("tar output lacks files:\n%.500s", list)
	}
	// A docker archive loads into podman where podman can run here.
	if _, err := exec.LookPath("podman"); err == nil {
		if out, err := exec.Command("podman", "load", "-i", dockerTar).CombinedOutput(); err != nil {
			t.Logf("podman load not possible here: %v: %s", err, out)
		} else {
			t.Logf("podman load: %s", out)
			_ = exec.Command("podman", "rmi", "-f", "example:v1").Run()
		}
	}
}

func TestImageCommands(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	ctx, _ := filepath.Abs("../../testdata/example")
	digest, _ := k.mustRun("build", "-q", "-t", "example:v1", "-t", "example:v2", ctx)
	digest = strings.TrimSpace(digest)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest) {
		t.Fatalf("build -q printed %q, want a digest", digest)
	}
	images, _ := k.mustRun("images")
	for _, want := range []string{"busybox", "example", "v1", "v2"} {
		if !strings.Contains(images, want) {
			t.Errorf("kiln images lacks %q:\n%s", want, images)
		}
	}
	raw, _ := k.mustRun("inspect", "example:v1")
	var insp struct {
		Digest   string
		Manifest struct{ Layers []any }
		Config   struct {
			Config struct {
				User string
				Cmd  []string
			}
		}
	}
	if err := json.Unmarshal([]byte(raw), &insp); err != nil {
		t.Fatalf("inspect output: %v\n%s", err, raw)
	}
	if insp.Digest != digest || insp.Config.Config.User != "app" || len(insp.Manifest.Layers) == 0 {
		t.Errorf("inspect: %+v", insp)
	}
	out, _ := k.mustRun("run", "example:v1")
	if !strings.Contains(out, "hello from kiln") || !strings.Contains(out, "running as app in /app") {
		t.Errorf("kiln run printed %q", out)
	}
	k.mustRun("rmi", "example:v2")
	images, _ = k.mustRun("images")
	if strings.Contains(images, "v2") {
		t.Errorf("v2 still listed after rmi:\n%s", images)
	}
	if _, _, err := k.run("inspect", "example:v2"); err == nil {
		t.Error("inspect of a removed name succeeded")
	}
	k.mustRun("prune", "--all")
	// The tagged image survives a prune and still runs.
	out, _ = k.mustRun("run", "example:v1", "cat", "/app/built.txt")
	if !strings.HasPrefix(out, "built by kiln") {
		t.Errorf("after prune, run printed %q", out)
	}
}

var stepLineRe = regexp.MustCompile(`(?m)^#(\d+) \[[^\]]*\] (.*)$`)

// stepResults maps each step's instruction to "CACHED" or "DONE" from plain progress output.
func stepResults(stderr string) map[string]string {
	res := map[string]string{}
	for _, m := range stepLineRe.FindAllStringSubmatch(stderr, -1) {
		n, instr := m[1], m[2]
		switch {
		case strings.Contains(stderr, "#"+n+" CACHED\n"):
			res[instr] = "CACHED"
		case regexp.MustCompile(`(?m)^#` + n + ` DONE`).MatchString(stderr):
			res[instr] = "DONE"
		}
	}
	return res
}

func TestCacheInvalidatesFromChangedCopy(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	ctx := copyDir(t, "../../testdata/cache-chain")
	build := func() map[string]string {
		_, stderr := k.mustRun("build", "--progress", "plain", ctx)
		return stepResults(stderr)
	}
	first := build()
	for instr, r := range first {
		if r != "DONE" && !strings.HasPrefix(instr, "FROM") {
			t.Errorf("first build: %s %s", instr, r)
		}
	}
	if err := os.WriteFile(filepath.Join(ctx, "b.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	second := build()
	want := map[string]string{
		"RUN echo before > /before":   "CACHED",
		"COPY a.txt /a.txt":           "CACHED",
		"COPY b.txt /b.txt":           "DONE",
		"RUN cat /a.txt /b.txt > /ab": "DONE",
		"COPY c.txt /c.txt":           "DONE",
	}
	for instr, r := range want {
		if second[instr] != r {
			t.Errorf("after changing b.txt: %s is %q, want %s (all: %v)", instr, second[instr], r, second)
		}
	}
	// Nothing changed: everything comes from the cache.
	third := build()
	for instr, r := range third {
		if r != "CACHED" && !strings.HasPrefix(instr, "FROM") {
			t.Errorf("unchanged rebuild: %s %s", instr, r)
		}
	}
}

// startBuild starts `kiln build` of a Dockerfile whose RUN prints "started" and then runs
// forever ignoring SIGTERM, and returns once the step has started.
func startBuild(t *testing.T, k *kilnEnv, marker string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	ctx := t.TempDir()
	df := fmt.Sprintf("FROM busybox:latest\nRUN trap '' TERM; echo started; while :; do sleep 1; done # %s\n", marker)
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "build", "--progress", "plain", ctx)
	cmd.Env = append(os.Environ(), "KILN_TEST_AS_KILN=1", "KILN_ROOT="+k.root)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), "started") {
		if time.Now().After(deadline) {
			t.Fatalf("the RUN step did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, stderr
}

// assertNothingLeft checks that no process of the step, no mount under the state directory and
// no active snapshot is left.
func assertNothingLeft(t *testing.T, k *kilnEnv, marker string) {
	t.Helper()
	if out, _ := exec.Command("pgrep", "-f", marker).Output(); len(out) > 0 {
		t.Errorf("processes of the step are left: %s", out)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), k.root) {
		t.Errorf("mounts left under %s", k.root)
	}
	assertNoSnapshotDirs(t, k, "active-")
}

// assertNoSnapshotDirs checks that the state directory holds no snapshot directory named
// prefix... (active-: a step's work snapshot; trash-: what is deleted after a build).
func assertNoSnapshotDirs(t *testing.T, k *kilnEnv, prefix string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(k.root, "snapshots"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("snapshot directory left: %s", e.Name())
		}
	}
}

// TestInterruptedBuild: SIGINT (130) or SIGTERM (143) to kiln, while its step ignores SIGTERM,
// stops the build within seconds and leaves no process, mount or active snapshot behind; the
// state directory stays usable.
func TestInterruptedBuild(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	for _, tc := range []struct {
		sig  os.Signal
		code int
	}{{os.Interrupt, 130}, {syscall.SIGTERM, 143}} {
		marker := fmt.Sprintf("kiln-interrupt-%d-%d", os.Getpid(), tc.code)
		cmd, _ := startBuild(t, k, marker)
		start := time.Now()
		if err := cmd.Process.Signal(tc.sig); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		elapsed := time.Since(start)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != tc.code {
			t.Errorf("%v: kiln exited with %v, want status %d", tc.sig, err, tc.code)
		}
		if elapsed > 10*time.Second {
			t.Errorf("%v: kiln took %v to stop", tc.sig, elapsed)
		}
		assertNothingLeft(t, k, marker)
	}
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox:latest\nRUN echo fine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k.mustRun("build", "-q", ctx)
}

// TestKilledBuildRecovered: kiln killed with -9 in the middle of a RUN leaves nothing that the
// next kiln run does not clean up: the step's processes die with it, and its mounted snapshot
// and cgroup are recovered by the next build.
func TestKilledBuildRecovered(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	marker := fmt.Sprintf("kiln-killed-%d", os.Getpid())
	cmd, _ := startBuild(t, k, marker)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-f", marker).Output()
		if len(out) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step's processes outlived kiln: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox:latest\nRUN echo after > /after\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k.mustRun("build", "-q", ctx)
	assertNothingLeft(t, k, marker)
	assertNoSnapshotDirs(t, k, "trash-")
}

// TestEndlessOutputBoundedMemory: a step printing 120 MB does not grow kiln's memory with it.
func TestEndlessOutputBoundedMemory(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	ctx := t.TempDir()
	df := "FROM busybox:latest\nRUN yes 'a line of output that goes on and on' | head -c 100000000; yes x | tr -d '\\n' | head -c 20000000\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "build", "--progress", "plain", ctx)
	cmd.Env = append(os.Environ(), "KILN_TEST_AS_KILN=1", "KILN_ROOT="+k.root)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	t.Logf("kiln's peak RSS: %d MB", ru.Maxrss/1024)
	if ru.Maxrss > 150*1024 {
		t.Errorf("kiln's peak RSS %d MB while the step printed 120 MB", ru.Maxrss/1024)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
