package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cgroupMaker makes a step's cgroup in one cgroup version; skip says why it cannot here.
type cgroupMaker struct {
	make func(id string, l Limits) (cgroup, error)
	skip string
}

// cgroupVersions are the cgroup makers a limit test runs with: v1 where this machine has the
// controllers in v1 hierarchies, v2 where a cgroup2 hierarchy offers them. Each subtest skips,
// saying why, where its version cannot hold the limits.
func cgroupVersions(t *testing.T, l Limits) map[string]cgroupMaker {
	t.Helper()
	vs := map[string]cgroupMaker{
		"v1": {skip: fmt.Sprintf("no cgroup v1 hierarchy for each of %v under /sys/fs/cgroup", v1Controllers(l))},
		"v2": {skip: "no cgroup2 file system mounted"},
	}
	if haveV1(v1Controllers(l)) {
		vs["v1"] = cgroupMaker{make: func(id string, l Limits) (cgroup, error) { return newCgroupV1(id, l) }}
	}
	if h := cgroup2Mount(); h != "" {
		if missing := missingV2Controllers(h, l.controllers()); len(missing) == 0 {
			vs["v2"] = cgroupMaker{make: func(id string, l Limits) (cgroup, error) { return newCgroupV2(h, id, l) }}
		} else {
			vs["v2"] = cgroupMaker{skip: fmt.Sprintf("cgroup v2 at %s offers no %v controller (this machine gives them to v1)", h, missing)}
		}
	}
	return vs
}

// forEachCgroupVersion runs f as a subtest per cgroup version, skipping those that cannot.
func forEachCgroupVersion(t *testing.T, l Limits, f func(t *testing.T, newCg func(string, Limits) (cgroup, error))) {
	for name, v := range cgroupVersions(t, l) {
		t.Run(name, func(t *testing.T) {
			if v.make == nil {
				t.Skip(v.skip)
			}
			f(t, v.make)
		})
	}
}

func TestCgroupLimitFiles(t *testing.T) {
	l := Limits{MemoryBytes: 64 << 20, CPUs: 1.5, CPUShares: 512, Pids: 200}
	forEachCgroupVersion(t, l, func(t *testing.T, newCg func(string, Limits) (cgroup, error)) {
		cg, err := newCg(testID(t), l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := cg.destroy(); err != nil {
				t.Error(err)
			}
		})
		want := map[string]string{}
		switch c := cg.(type) {
		case *cgroupV1:
			want[filepath.Join(c.dir("memory"), "memory.limit_in_bytes")] = "67108864"
			if _, err := os.Stat(filepath.Join(c.dir("memory"), "memory.memsw.limit_in_bytes")); err == nil {
				want[filepath.Join(c.dir("memory"), "memory.memsw.limit_in_bytes")] = "67108864"
			}
			want[filepath.Join(c.dir("cpu"), "cpu.cfs_quota_us")] = "150000"
			want[filepath.Join(c.dir("cpu"), "cpu.cfs_period_us")] = "100000"
			want[filepath.Join(c.dir("cpu"), "cpu.shares")] = "512"
			want[filepath.Join(c.dir("pids"), "pids.max")] = "200"
		case *cgroupV2:
			want[filepath.Join(c.dir, "memory.max")] = "67108864"
			if _, err := os.Stat(filepath.Join(c.dir, "memory.swap.max")); err == nil {
				want[filepath.Join(c.dir, "memory.swap.max")] = "0"
			}
			want[filepath.Join(c.dir, "cpu.max")] = "150000 100000"
			want[filepath.Join(c.dir, "cpu.weight")] = strconv.FormatUint(sharesToWeight(512), 10)
			want[filepath.Join(c.dir, "pids.max")] = "200"
		}
		for f, w := range want {
			b, err := os.ReadFile(f)
			if got := strings.TrimSpace(string(b)); err != nil || got != w {
				t.Errorf("%s = %q (%v), want %q", f, got, err, w)
			}
		}
	})
}

func TestSharesToWeight(t *testing.T) {
	for _, tt := range []struct{ shares, weight uint64 }{{2, 1}, {1, 1}, {1024, 39}, {262144, 10000}, {1 << 30, 10000}} {
		if got := sharesToWeight(tt.shares); got != tt.weight {
			t.Errorf("sharesToWeight(%d) = %d, want %d", tt.shares, got, tt.weight)
		}
	}
}

func TestRunLimitsInvalid(t *testing.T) {
	root := newTestRoot(t, true)
	for _, tt := range []struct {
		l    Limits
		want string
	}{
		{Limits{MemoryBytes: -1}, "invalid memory limit"},
		{Limits{MemoryBytes: 1 << 20}, "below the minimum of 6MiB"},
		{Limits{CPUs: -1}, "invalid CPU limit"},
		{Limits{CPUs: 0.001}, "below the minimum"},
		{Limits{Pids: -5}, "invalid pids limit"},
	} {
		_, err := runShell(t, root, "true", func(s *Spec) { s.Limits = tt.l })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %q", tt.l, err, tt.want)
		}
	}
}

// runWith runs a script with a given cgroup maker.
func runWith(ctx context.Context, t *testing.T, newCg func(string, Limits) (cgroup, error), root, script string, edit func(*Spec)) (string, string, error) {
	t.Helper()
	var out bytes.Buffer
	spec := Spec{ID: testID(t), Root: root, Args: []string{"/bin/sh", "-c", script}, Stdout: &out, Stderr: &out}
	edit(&spec)
	err := run(ctx, spec, newCg)
	return out.String(), spec.ID, err
}

func TestRunPidsLimit(t *testing.T) {
	l := Limits{Pids: 200}
	forEachCgroupVersion(t, l, func(t *testing.T, newCg func(string, Limits) (cgroup, error)) {
		root := newTestRoot(t, true)
		// Forks until refused: the step fails, having had no more than its 200 tasks.
		out, id, err := runWith(context.Background(), t, newCg, root,
			`n=0; while [ $n -lt 1000 ]; do sleep 1000 & n=$((n+1)); echo $n > /count; done; echo ALL`,
			func(s *Spec) { s.Limits = l })
		var ee *ExitError
		if !errors.As(err, &ee) || strings.Contains(out, "ALL") {
			t.Fatalf("err = %v, output %q: want the step to fail at its pids limit", err, out)
		}
		b, _ := os.ReadFile(filepath.Join(root, "count"))
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n < 150 || n >= 200 {
			t.Errorf("%d processes started, want a little under the limit of 200", n)
		}
		assertNoProcess(t, "sleep\x001000")
		assertCgroupGone(t, id)
	})
}

func TestRunForkBomb(t *testing.T) {
	l := Limits{Pids: 200}
	forEachCgroupVersion(t, l, func(t *testing.T, newCg func(string, Limits) (cgroup, error)) {
		root := newTestRoot(t, true)
		tests := []struct {
			name, script string
			wantFail     bool
		}{
			// Every shell waits for its pipeline: once forks are refused, the errors unwind
			// the tree and the step fails.
			{"foreground", `b() { b | b; }; b`, true},
			// The bomb forks on in the background after the step's main process is done;
			// what is left of it is killed with the step.
			{"background", `b() { b | b & }; b; sleep 1`, false},
		}
		for _, tt := range tests {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			out, id, err := runWith(ctx, t, newCg, root, tt.script, func(s *Spec) { s.Limits = l })
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s: fork bomb step not over in 60s: %v", tt.name, err)
			}
			t.Logf("%s fork bomb: %v after %v", tt.name, err, time.Since(start))
			var ee *ExitError
			if tt.wantFail && !errors.As(err, &ee) {
				t.Errorf("%s: err = %v, want the step to fail", tt.name, err)
			}
			if tt.wantFail && !strings.Contains(out, "can't fork") {
				t.Errorf("%s: output does not show refused forks: %.200q", tt.name, out)
			}
			assertCgroupGone(t, id)
		}
		// The machine is fine: the next step runs as usual.
		if out, err := runShell(t, root, "echo alive"); err != nil || out != "alive\n" {
			t.Errorf("next step: %v %q", err, out)
		}
	})
}

func TestRunMemoryLimitOOM(t *testing.T) {
	l := Limits{MemoryBytes: 64 << 20}
	forEachCgroupVersion(t, l, func(t *testing.T, newCg func(string, Limits) (cgroup, error)) {
		root := newTestRoot(t, true)
		// awk doubles a string to 1 GiB: real anonymous memory, far over 64 MiB.
		out, id, err := runWith(context.Background(), t, newCg, root,
			`awk 'BEGIN { s = "x"; for (i = 0; i < 30; i++) s = s s; print length(s) }'`,
			func(s *Spec) { s.Limits = l })
		if !IsOutOfMemory(err) {
			t.Fatalf("err = %v (output %q), want an out-of-memory ExitError", err, out)
		}
		if !strings.Contains(err.Error(), "out of memory") {
			t.Errorf("message %q does not say out of memory", err)
		}
		var ee *ExitError
		if errors.As(err, &ee); ee.Signal != "SIGKILL" {
			t.Errorf("ExitError %+v, want awk killed by SIGKILL", *ee)
		}
		assertCgroupGone(t, id)

		// Under the limit, the same kind of work goes through and is not called OOM.
		out, _, err = runWith(context.Background(), t, newCg, root,
			`awk 'BEGIN { s = "x"; for (i = 0; i < 22; i++) s = s s; print length(s) }'`,
			func(s *Spec) { s.Limits = l })
		if err != nil || out != "4194304\n" {
			t.Errorf("4 MiB under a 64 MiB limit: %v %q", err, out)
		}
		// A failure that is not for memory is not called one.
		_, _, err = runWith(context.Background(), t, newCg, root, "exit 3", func(s *Spec) { s.Limits = l })
		if IsOutOfMemory(err) || err == nil {
			t.Errorf("exit 3 under a memory limit: %v", err)
		}
	})
}

func TestRunCPULimit(t *testing.T) {
	l := Limits{CPUs: 0.2}
	forEachCgroupVersion(t, l, func(t *testing.T, newCg func(string, Limits) (cgroup, error)) {
		root := newTestRoot(t, true)
		// A busy loop of about a second of wall time: with a fifth of a CPU, it gets about a
		// fifth of that as CPU time.
		out, _, err := runWith(context.Background(), t, newCg, root,
			`time -p sh -c 'end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done'`,
			func(s *Spec) { s.Limits = l })
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var real, user, sys float64
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				switch f[0] {
				case "real":
					real = v
				case "user":
					user = v
				case "sys":
					sys = v
				}
			}
		}
		if real < 1 {
			t.Fatalf("time output %q", out)
		}
		if share := (user + sys) / real; share > 0.3 {
			t.Errorf("CPU share %.2f (real %.2fs, user %.2fs, sys %.2fs), want about 0.2", share, real, user, sys)
		}
	})
}

// countingWriter discards what it gets and counts it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// A step that prints without end costs kiln a pipe buffer, not the output's size.
func TestRunOutputStreamed(t *testing.T) {
	root := newTestRoot(t, true)
	var w countingWriter
	goruntime.GC()
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	err := Run(context.Background(), Spec{
		ID: testID(t), Root: root, Args: []string{"head", "-c", "200000000", "/dev/zero"}, Stdout: &w,
	})
	goruntime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if w.n != 200000000 {
		t.Errorf("streamed %d bytes, want 200000000", w.n)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("Run allocated %d bytes while streaming 200 MB", alloc)
	}
	if after.HeapInuse > before.HeapInuse+16<<20 {
		t.Errorf("heap grew from %d to %d bytes", before.HeapInuse, after.HeapInuse)
	}
}

// A step that ignores SIGTERM, with everything the sandbox can have (limits, network none,
// mounts), is gone soon after its context is cancelled, leaving no process, mount or cgroup.
func TestRunCancelIgnoresSIGTERM(t *testing.T) {
	l := Limits{MemoryBytes: 256 << 20, Pids: 100, CPUs: 1}
	forEachCgroupVersion(t, l, func(t *testing.T, newCg func(string, Limits) (cgroup, error)) {
		root := newTestRoot(t, true)
		src := t.TempDir()
		marker := fmt.Sprintf("%d", 700000+time.Now().UnixNano()%99999)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(500*time.Millisecond, cancel)
		start := time.Now()
		_, id, err := runWith(ctx, t, newCg, root,
			`trap '' TERM INT HUP; sh -c "trap '' TERM; sleep `+marker+`" & sleep `+marker,
			func(s *Spec) {
				s.Limits = l
				s.Network = NetworkNone
				s.Mounts = []Mount{{Type: MountTmpfs, Target: "/cache"}, {Type: MountBind, Source: src, Target: "/src"}}
			})
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("cancelled step took %v", d)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		assertNoProcess(t, "sleep\x00"+marker)
		assertCgroupGone(t, id)
		for _, h := range []string{"memory", "cpu"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, cgroupParent, id)); err == nil {
				t.Errorf("v1 %s cgroup left", h)
			}
		}
		assertNoMountUnder(t, root)
		assertNoMountUnder(t, src)
		for _, p := range []string{"cache", "src", "etc/hosts"} {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				t.Errorf("mount stub /%s left after cancel", p)
			}
		}
	})
}
