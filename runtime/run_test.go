package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRunEcho(t *testing.T) {
	root := newTestRoot(t, true)
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), Spec{
		ID:     testID(t),
		Root:   root,
		Args:   []string{"echo", "hello", "world"},
		Stdout: &stdout,
		Stderr: &stderr,
	})
	if err != nil {
		t.Fatalf("Run: %v (stderr %q)", err, stderr.String())
	}
	if got := stdout.String(); got != "hello world\n" {
		t.Errorf("stdout = %q, want %q", got, "hello world\n")
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want empty", stderr.String())
	}
}

func TestRunStdin(t *testing.T) {
	root := newTestRoot(t, true)
	out, err := runShell(t, root, "tr a-z A-Z", func(s *Spec) { s.Stdin = strings.NewReader("piped in\n") })
	if err != nil {
		t.Fatal(err)
	}
	if out != "PIPED IN\n" {
		t.Errorf("output = %q", out)
	}
}

func TestRunExitStatus(t *testing.T) {
	root := newTestRoot(t, true)
	tests := []struct {
		script string
		want   ExitError
	}{
		{"exit 3", ExitError{Code: 3}},
		{"exit 137", ExitError{Code: 137}},
		{"kill -9 $$", ExitError{Code: 137, Signal: "SIGKILL"}},
		{"kill -TERM $$", ExitError{Code: 143, Signal: "SIGTERM"}},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			_, err := runShell(t, root, tt.script)
			ee, ok := err.(*ExitError)
			if !ok {
				t.Fatalf("err = %#v, want an *ExitError itself", err)
			}
			if *ee != tt.want {
				t.Errorf("ExitError = %+v, want %+v", *ee, tt.want)
			}
		})
	}
}

func TestRunCommandNotFound(t *testing.T) {
	root := newTestRoot(t, true)
	err := Run(context.Background(), Spec{ID: testID(t), Root: root, Args: []string{"no-such-tool"}})
	var ee *ExitError
	if err == nil || errors.As(err, &ee) {
		t.Fatalf("err = %v, want a start error", err)
	}
	if !strings.Contains(err.Error(), `"no-such-tool": executable file not found in $PATH`) {
		t.Errorf("err = %v", err)
	}
}

func TestRunBadSpec(t *testing.T) {
	root := newTestRoot(t, true)
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no args", Spec{ID: "a", Root: root}, "no command"},
		{"relative root", Spec{ID: "a", Root: "rel", Args: []string{"true"}}, "not an absolute path"},
		{"missing root", Spec{ID: "a", Root: root + "/nope", Args: []string{"true"}}, "no such file"},
		{"bad id", Spec{ID: "../x", Root: root, Args: []string{"true"}}, "invalid step id"},
		{"empty id", Spec{Root: root, Args: []string{"true"}}, "invalid step id"},
		{"unknown user", Spec{ID: "a", Root: root, Args: []string{"true"}, User: "ghost"}, "unable to find user ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(context.Background(), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestRunUser(t *testing.T) {
	root := newTestRoot(t, true)
	tests := []struct {
		user string
		want string
	}{
		{"", "uid=0(root) gid=0(root) groups=10(wheel)"},
		{"app", "uid=1000(app) gid=1000(app) groups=10(wheel)"},
		{"1000", "uid=1000(app) gid=1000(app) groups=10(wheel)"},
		{"1000:1000", "uid=1000(app) gid=1000(app)"},
		{"app:wheel", "uid=1000(app) gid=10(wheel)"},
		{"nobody", "uid=65534(nobody) gid=65534(nogroup)"},
		{"4242", "uid=4242 gid=0(root)"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			out, err := runShell(t, root, "id", func(s *Spec) { s.User = tt.user })
			if err != nil {
				t.Fatalf("id: %v: %s", err, out)
			}
			if !strings.HasPrefix(out, tt.want) {
				t.Errorf("id = %q, want it to start %q", out, tt.want)
			}
			// Explicit groups drop the supplementary ones, as runc does.
			if strings.Contains(tt.user, ":") && strings.Contains(out, "wheel") && !strings.Contains(tt.want, "wheel") {
				t.Errorf("id = %q: supplementary groups with an explicit group", out)
			}
		})
	}
}

func TestRunEnv(t *testing.T) {
	root := newTestRoot(t, true)
	tests := []struct {
		name string
		user string
		env  []string
		want []string
	}{
		{"defaults", "", nil, []string{"PATH=" + DefaultPath, "HOME=/root"}},
		{"app home", "app", []string{"A=1"}, []string{"PATH=" + DefaultPath, "HOME=/home/app", "A=1"}},
		{"uid without passwd entry", "4242", nil, []string{"HOME=/"}},
		{"given", "", []string{"PATH=/bin", "HOME=/x"}, []string{"PATH=/bin", "HOME=/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Run(context.Background(), Spec{
				ID: testID(t), Root: root, Args: []string{"env"}, Env: tt.env, User: tt.user,
				Stdout: &out, Stderr: &out,
			})
			if err != nil {
				t.Fatalf("env: %v: %s", err, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			for _, w := range tt.want {
				if !slices.Contains(lines, w) {
					t.Errorf("env = %q, want %q in it", lines, w)
				}
			}
			if n := len(lines); n != len(tt.want) && tt.name != "uid without passwd entry" {
				t.Errorf("env has %d variables %q, want only %q", n, lines, tt.want)
			}
		})
	}
}

func TestRunCwdCreated(t *testing.T) {
	root := newTestRoot(t, true)
	out, err := runShell(t, root, "pwd", func(s *Spec) { s.Cwd = "/work/dir"; s.User = "app" })
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out != "/work/dir\n" {
		t.Errorf("pwd = %q", out)
	}
	fi, err := os.Stat(filepath.Join(root, "work/dir"))
	if err != nil {
		t.Fatalf("working directory not kept: %v", err)
	}
	if uid, _ := fileOwner(fi); uid != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("working directory: uid %d mode %v, want root 0755", uid, fi.Mode().Perm())
	}
}

func TestRunProcShowsOnlySandbox(t *testing.T) {
	root := newTestRoot(t, true)
	out, err := runShell(t, root, `cat /proc/1/cmdline; echo; echo $$; ls -d /proc/[0-9]*`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.TrimRight(lines[0], "\x00"); got != initArg0 {
		t.Errorf("PID 1 is %q, want the sandbox init", got)
	}
	// PID 1's own threads take the first few ids; the shell comes right after them.
	if pid, err := strconv.Atoi(lines[1]); err != nil || pid > 20 {
		t.Errorf("the shell's pid is %s, want one of the first in a new namespace", lines[1])
	}
	// /proc/1, the shell, maybe the ls: nothing of the host.
	if pids := lines[2:]; len(pids) > 3 || !slices.Contains(pids, "/proc/1") || !slices.Contains(pids, "/proc/"+lines[1]) {
		t.Errorf("/proc lists %q", pids)
	}
}

func TestRunHostname(t *testing.T) {
	root := newTestRoot(t, true)
	for _, tt := range []struct{ give, want string }{{"", DefaultHostname}, {"builder-7", "builder-7"}} {
		out, err := runShell(t, root, "hostname; cat /etc/hostname; grep -c \"127.0.0.1.*localhost $(hostname)\" /etc/hosts",
			func(s *Spec) { s.Hostname = tt.give })
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		want := tt.want + "\n" + tt.want + "\n1\n"
		if out != want {
			t.Errorf("hostname %q: output %q, want %q", tt.give, out, want)
		}
	}
}

func TestRunDev(t *testing.T) {
	root := newTestRoot(t, true)
	out, err := runShell(t, root, `ls -A /dev | tr '\n' ' '; echo; echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; readlink /dev/ptmx; readlink /dev/fd; ls /dev/pts`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero \n" +
		"null-ok\n4\npts/ptmx\n/proc/self/fd\nptmx\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

func TestRunSysReadOnly(t *testing.T) {
	root := newTestRoot(t, true)
	out, err := runShell(t, root, `test -d /sys/kernel && echo sysfs; touch /sys/x 2>/dev/null && echo WRITABLE; mkdir /sys/kernel/x 2>/dev/null && echo WRITABLE; true`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out != "sysfs\n" {
		t.Errorf("output %q, want sysfs mounted and read-only", out)
	}
}

func TestRunMountStubsRemoved(t *testing.T) {
	tests := []struct {
		name    string
		withEtc bool
	}{{"etc exists", true}, {"no etc", false}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newTestRoot(t, tt.withEtc)
			var etcBefore os.FileInfo
			if tt.withEtc {
				etcBefore, _ = os.Stat(filepath.Join(root, "etc"))
			}
			rootBefore, _ := os.Stat(root)
			out, err := runShell(t, root, `cat /etc/hosts; test -s /etc/resolv.conf && echo resolv; (echo > /etc/hosts) 2>/dev/null || echo read-only`)
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if !strings.Contains(out, "127.0.0.1\tlocalhost kiln\n::1\tlocalhost ip6-localhost") || !strings.Contains(out, "resolv\nread-only\n") {
				t.Errorf("output %q", out)
			}
			for _, p := range []string{"etc/hosts", "etc/resolv.conf", "etc/hostname"} {
				if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
					t.Errorf("mount stub /%s left in the root", p)
				}
			}
			// As BuildKit does, the directories of /proc, /dev and /sys stay (0755, root's).
			for _, p := range []string{"proc", "dev", "sys"} {
				fi, err := os.Lstat(filepath.Join(root, p))
				if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
					t.Errorf("/%s: %v %v, want a directory 0755", p, fi, err)
				}
			}
			if _, err := os.Lstat(filepath.Join(root, "etc")); tt.withEtc == (err != nil) {
				t.Errorf("/etc: %v (existed before: %v)", err, tt.withEtc)
			}
			if etcBefore != nil {
				if after, _ := os.Stat(filepath.Join(root, "etc")); !after.ModTime().Equal(etcBefore.ModTime()) {
					t.Errorf("/etc mtime %v, was %v", after.ModTime(), etcBefore.ModTime())
				}
			}
			// The root changed only by /proc, /dev and /sys; a second run leaves its time alone.
			rootBefore, _ = os.Stat(root)
			if out, err := runShell(t, root, `cat /etc/hosts >/dev/null`); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if after, _ := os.Stat(root); !after.ModTime().Equal(rootBefore.ModTime()) {
				t.Errorf("root mtime %v, was %v", after.ModTime(), rootBefore.ModTime())
			}
		})
	}
}

func TestRunExistingEtcFilesKept(t *testing.T) {
	root := newTestRoot(t, true)
	writeFile(t, filepath.Join(root, "etc/hosts"), "image hosts\n")
	for _, p := range []string{"proc", "dev", "sys"} {
		if err := os.Mkdir(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runShell(t, root, `cat /etc/hosts`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.HasPrefix(out, "127.0.0.1") {
		t.Errorf("/etc/hosts inside = %q, want the sandbox's", out)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hosts")); string(b) != "image hosts\n" {
		t.Errorf("image's /etc/hosts is now %q", b)
	}
	for _, p := range []string{"proc", "dev", "sys"} {
		if fi, err := os.Stat(filepath.Join(root, p)); err != nil || !fi.IsDir() {
			t.Errorf("existing /%s removed: %v", p, err)
		}
	}
}

func TestRunStepKeepsFilesInStubDir(t *testing.T) {
	root := newTestRoot(t, false)
	out, err := runShell(t, root, `echo mine > /etc/own`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/own")); err != nil || string(b) != "mine\n" {
		t.Errorf("/etc/own = %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/hosts")); err == nil {
		t.Error("stub /etc/hosts left")
	}
}

func TestRunHostRootInvisible(t *testing.T) {
	root := newTestRoot(t, true)
	secret, err := os.CreateTemp("/tmp", "host-secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(secret.Name()) })
	fmt.Fprint(secret, "TOPSECRET")
	secret.Close()
	writeFile(t, filepath.Join(root, "visible"), "in-root")
	out, err := runShell(t, root, fmt.Sprintf(`cat /visible; echo; cat %s %s 2>/dev/null; echo; grep -c . /proc/self/mountinfo`, secret.Name(), filepath.Join(root, "visible")))
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(out, "TOPSECRET") {
		t.Errorf("host file readable in the sandbox: %q", out)
	}
	if !strings.HasPrefix(out, "in-root\n\n") {
		t.Errorf("output %q, want the root's own file and nothing of the host's", out)
	}
}

func TestRunBackgroundProcessKilled(t *testing.T) {
	root := newTestRoot(t, true)
	marker := fmt.Sprintf("%d", 900000+time.Now().UnixNano()%99999)
	id := testID(t)
	var out bytes.Buffer
	// The background sleep keeps stdout open: Run must still return as soon as sh exits.
	start := time.Now()
	err := Run(context.Background(), Spec{
		ID: id, Root: root, Args: []string{"sh", "-c", "sleep " + marker + " & echo started"},
		Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v", d)
	}
	if out.String() != "started\n" {
		t.Errorf("output %q", out.String())
	}
	assertNoProcess(t, "sleep\x00"+marker)
	assertCgroupGone(t, id)
}

func TestRunZombiesReaped(t *testing.T) {
	root := newTestRoot(t, true)
	// The subshell exits at once, so its sleep is re-parented to PID 1 and must be reaped there.
	out, err := runShell(t, root, `(sleep 0.1 &); (true &); sleep 0.6; cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == "Z" {print "zombie", $1, $2}'; echo done`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out != "done\n" {
		t.Errorf("output %q, want no zombie", out)
	}
}

func TestRunCancel(t *testing.T) {
	root := newTestRoot(t, true)
	id := testID(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	marker := fmt.Sprintf("%d", 800000+time.Now().UnixNano()%99999)
	start := time.Now()
	err := Run(ctx, Spec{ID: id, Root: root, Args: []string{"sh", "-c", "sleep " + marker + " & sleep " + marker}})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled Run took %v", d)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	assertNoProcess(t, "sleep\x00"+marker)
	assertCgroupGone(t, id)
	assertNoMountUnder(t, root)
	for _, p := range []string{"etc/hosts", "etc/resolv.conf", "etc/hostname"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("mount stub /%s left after cancel", p)
		}
	}
}

func TestRunCancelledBeforeStart(t *testing.T) {
	root := newTestRoot(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Run(ctx, Spec{ID: testID(t), Root: root, Args: []string{"true"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestRunCgroupV1(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/pids/cgroup.procs"); err != nil {
		t.Skip("no cgroup v1 pids hierarchy")
	}
	root := newTestRoot(t, true)
	id := testID(t)
	var out bytes.Buffer
	newV1 := func(id string, l Limits) (cgroup, error) { return newCgroupV1(id, l) }
	// The step sees itself in its own v1 cgroup; the background sleep must not survive it.
	err := run(context.Background(), Spec{
		ID: id, Root: root, Args: []string{"sh", "-c", "sleep 1000 & grep pids /proc/self/cgroup"},
		Stdout: &out, Stderr: &out,
	}, newV1)
	if err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if want := "pids:/" + cgroupParent + "/" + id; !strings.Contains(out.String(), want) {
		t.Errorf("cgroup %q, want %q", out.String(), want)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", cgroupParent, id)); err == nil {
		t.Error("v1 cgroup left")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = run(ctx, Spec{ID: id, Root: root, Args: []string{"sleep", "1000"}}, newV1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", cgroupParent, id)); err == nil {
		t.Error("v1 cgroup left after cancel")
	}
}

func TestRunCgroupV2(t *testing.T) {
	hierarchy := cgroup2Mount()
	if hierarchy == "" {
		t.Skip("no cgroup2 hierarchy")
	}
	root := newTestRoot(t, true)
	id := testID(t)
	out, err := runShell(t, root, "grep '^0::' /proc/self/cgroup", func(s *Spec) { s.ID = id })
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := "0::/" + cgroupParent + "/" + id + "\n"; out != want {
		t.Errorf("cgroup %q, want %q", out, want)
	}
	assertCgroupGone(t, id)
}

func TestRunConcurrent(t *testing.T) {
	var roots []string
	for range 4 {
		roots = append(roots, newTestRoot(t, true))
	}
	errs := make(chan error, 4)
	for i, root := range roots {
		go func() {
			var out bytes.Buffer
			err := Run(context.Background(), Spec{
				ID: testID(t), Root: root, Args: []string{"sh", "-c", fmt.Sprintf("sleep 0.2; echo %d", i)},
				Stdout: &out,
			})
			if err == nil && out.String() != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("run %d: output %q", i, out.String())
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, root := range roots {
		for _, p := range []string{"etc/hosts", "etc/resolv.conf", "etc/hostname"} {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				t.Errorf("mount stub /%s left after concurrent runs", p)
			}
		}
	}
}

// assertNoProcess fails if any host process has a command line containing cmdline.
func assertNoProcess(t *testing.T, cmdline string) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), cmdline) {
			t.Errorf("process %s (%q) outlived the step", e.Name(), b)
		}
	}
}

// assertCgroupGone fails if the step's cgroup still exists in any hierarchy.
func assertCgroupGone(t *testing.T, id string) {
	t.Helper()
	for _, h := range []string{cgroup2Mount(), "/sys/fs/cgroup/pids"} {
		if h == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(h, cgroupParent, id)); err == nil {
			t.Errorf("cgroup %s left", filepath.Join(h, cgroupParent, id))
		}
	}
}

// assertNoMountUnder fails if the host's mount table has anything at or below dir.
func assertNoMountUnder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			t.Errorf("mount left: %s", line)
		}
	}
}

// BenchmarkRunTrue is one RUN step's sandbox overhead: a root as images have it (/proc, /dev,
// /sys present; /etc/hosts, resolv.conf, hostname not, so they are stubbed and removed), and
// a bare one where every mount point is a stub.
func BenchmarkRunTrue(b *testing.B) {
	for _, bare := range []bool{false, true} {
		name := "image"
		if bare {
			name = "bare"
		}
		b.Run(name, func(b *testing.B) {
			root := newTestRoot(b, true)
			if !bare {
				for _, d := range []string{"proc", "dev", "sys"} {
					if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
						b.Fatal(err)
					}
				}
			}
			ctx := context.Background()
			id := testID(b)
			for b.Loop() {
				if err := Run(ctx, Spec{ID: id, Root: root, Args: []string{"/bin/true"}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Only stdio reaches the step's process: not the config or status pipes, not kiln's own files.
func TestRunNoLeakedFDs(t *testing.T) {
	root := newTestRoot(t, true)
	f, err := os.Open(root) // a file kiln holds open while Run runs
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	// ls itself holds one more fd: the /proc/self/fd it reads.
	err = Run(context.Background(), Spec{ID: testID(t), Root: root, Args: []string{"ls", "-l", "/proc/self/fd"}, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	// Lines look like "lr-x------ 1 0 0 64 Jan 1 00:00 0 -> /dev/null"; ls's own fd 3 may
	// already be gone when ls reads its link.
	var fds []string
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[len(f)-2] == "->" {
			fds = append(fds, f[len(f)-3]+" "+f[len(f)-1])
		}
	}
	fds = slices.DeleteFunc(fds, func(s string) bool { return strings.HasPrefix(s, "3 ") })
	if len(fds) != 3 || fds[0] != "0 /dev/null" || !strings.HasPrefix(fds[1], "1 pipe:") || !strings.HasPrefix(fds[2], "2 pipe:") {
		t.Errorf("open fds %q (ls -l: %q), want only stdin (/dev/null), stdout and stderr", fds, out.String())
	}
}
