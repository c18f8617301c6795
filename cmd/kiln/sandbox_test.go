package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildDockerfile writes df into a new context and builds it with args; it returns stderr and
// the error.
func buildDockerfile(t *testing.T, k *kilnEnv, df string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], append(append([]string{"build", "--progress", "plain"}, args...), ctx)...)
	cmd.Env = append(append(os.Environ(), "KILN_TEST_AS_KILN=1", "KILN_ROOT="+k.root), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSandboxLimitsFromFlags: the limits given to `kiln build` reach every RUN: a step that
// allocates past --memory fails with "out of memory" and names the step; a fork bomb under
// --pids-limit fails its step only; --network none leaves only loopback.
func TestSandboxLimitsFromFlags(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)

	out, err := buildDockerfile(t, k, "FROM busybox:latest\nRUN echo fine > /ok\nRUN awk 'BEGIN { s = \"x\"; while (1) s = s s }'\n", nil, "--memory", "64m")
	if err == nil {
		t.Fatalf("a 1 GiB allocation under --memory 64m succeeded:\n%s", out)
	}
	last := lastLine(out)
	if !strings.Contains(last, "out of memory") || !strings.Contains(last, "Dockerfile:3") || !strings.Contains(last, "awk") {
		t.Errorf("error %q: want out of memory, the Dockerfile line and the step", last)
	}

	bomb := "FROM busybox:latest\nRUN bomb() { bomb | bomb & }; bomb; sleep 3; echo survived > /tmp/x; exit 1\n"
	out, err = buildDockerfile(t, k, bomb, nil, "--pids-limit", "200")
	if err == nil {
		t.Fatalf("the fork bomb step succeeded:\n%s", out)
	}
	// The machine survives, and the next build runs normally under the same limit.
	if out, err := buildDockerfile(t, k, "FROM busybox:latest\nRUN echo after the bomb\n", nil, "--pids-limit", "200"); err != nil {
		t.Fatalf("build after the fork bomb: %v\n%s", err, out)
	}

	out, err = buildDockerfile(t, k, "FROM busybox:latest\nRUN ls /sys/class/net > /net.txt && cat /net.txt\n", nil, "--network", "none")
	if err != nil {
		t.Fatalf("--network none: %v\n%s", err, out)
	}
	if !strings.Contains(out, " lo\n") || strings.Contains(out, "eth") {
		t.Errorf("--network none: interfaces:\n%s", out)
	}
}

// TestBuildArgFromEnvironment: --build-arg NAME takes its value from kiln's environment and is
// left out when the variable is unset, as docker build does.
func TestBuildArgFromEnvironment(t *testing.T) {
	k := newKilnEnv(t)
	localBusybox(t, k)
	df := "FROM busybox:latest\nARG FROM_ENV\nARG UNSET_VAR=default\nRUN echo \"[$FROM_ENV][$UNSET_VAR]\"\n"
	out, err := buildDockerfile(t, k, df, []string{"FROM_ENV=taken from the environment"}, "--build-arg", "FROM_ENV", "--build-arg", "UNSET_VAR")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "[taken from the environment][default]") {
		t.Errorf("output:\n%s", out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
