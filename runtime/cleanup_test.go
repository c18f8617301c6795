package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary a stand-in for kiln: it runs one long step and never returns
// (the test kills it with SIGKILL).
const helperEnv = "KILN_RUNTIME_TEST_STEP"

// stepHelper runs the step described by the environment: root, id and whether to set limits.
func stepHelper() int {
	spec := Spec{
		ID:   os.Getenv(helperEnv),
		Root: os.Getenv("KILN_RUNTIME_TEST_ROOT"),
		Args: []string{"sh", "-c", "sleep 1000 & sleep 1000"},
	}
	if os.Getenv("KILN_RUNTIME_TEST_LIMITS") != "" {
		spec.Limits = Limits{Pids: 50, MemoryBytes: 256 << 20}
	}
	err := Run(context.Background(), spec)
	fmt.Fprintln(os.Stderr, "helper step ended:", err)
	return 1
}

// stepCgroupDirs lists the directories a step's cgroup has in every hierarchy.
func stepCgroupDirs(id string) []string {
	var dirs []string
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, cgroupParent, id)
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

func TestCleanupStaleAfterKill9(t *testing.T) {
	for _, limits := range []bool{false, true} {
		t.Run(fmt.Sprintf("limits=%v", limits), func(t *testing.T) {
			root := newTestRoot(t, true)
			id := testID(t)
			cmd := exec.Command("/proc/self/exe", "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+id, "KILN_RUNTIME_TEST_ROOT="+root)
			if limits {
				cmd.Env = append(cmd.Env, "KILN_RUNTIME_TEST_LIMITS=1")
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				for _, d := range stepCgroupDirs(id) {
					_ = (&cgroupV1{dirs: []string{d}}).destroy()
				}
			})

			// Wait for the step to run: both sleeps and the init in the cgroup.
			var dirs []string
			deadline := time.Now().Add(10 * time.Second)
			for {
				dirs = stepCgroupDirs(id)
				if len(dirs) > 0 {
					if pids, _ := readPids(dirs[0]); len(pids) >= 3 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("step did not start: %s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if limits && len(dirs) < 2 {
				t.Errorf("cgroups %v, want the pids and memory hierarchies", dirs)
			}

			// A running step's cgroup is not stale, whatever its age.
			if err := cleanupStale(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			if got := stepCgroupDirs(id); len(got) != len(dirs) {
				t.Fatalf("cleanup removed a running step's cgroups: %v left of %v", got, dirs)
			}

			// kill -9 kiln: the kernel takes the sandbox with it, the cgroups stay behind.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			deadline = time.Now().Add(10 * time.Second)
			for {
				pids, _ := readPids(dirs[0])
				if len(pids) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("sandbox outlived kiln: pids %v", pids)
				}
				time.Sleep(20 * time.Millisecond)
			}
			assertNoProcess(t, "sleep\x001000\x00")
			if got := stepCgroupDirs(id); len(got) != len(dirs) {
				t.Fatalf("stale cgroups %v, want %v", got, dirs)
			}

			// Young stale cgroups are spared (another kiln may be setting one up)...
			if err := CleanupStale(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := stepCgroupDirs(id); len(got) != len(dirs) {
				t.Errorf("CleanupStale removed a cgroup made %v ago", staleGrace)
			}
			// ... old ones go.
			start := time.Now()
			if err := cleanupStale(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			t.Logf("clean-up took %v", time.Since(start))
			if got := stepCgroupDirs(id); len(got) != 0 {
				t.Errorf("stale cgroups left: %v", got)
			}
		})
	}
}
