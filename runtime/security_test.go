package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// procStatus returns the fields of /proc/self/status as the step's process sees it.
func procStatus(t *testing.T, root string, edit ...func(*Spec)) map[string]string {
	t.Helper()
	out, err := runShell(t, root, "cat /proc/self/status", edit...)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func TestRunCapabilities(t *testing.T) {
	root := newTestRoot(t, true)
	all, err := allCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	full := fmt.Sprintf("%016x", all)
	tests := []struct {
		name                    string
		edit                    func(*Spec)
		inh, prm, eff, bnd, amb string
		seccomp, noNewPrivs     string
	}{
		{"default root", func(*Spec) {}, "0000000000000000", "00000000a80425fb", "00000000a80425fb", "00000000a80425fb", "0000000000000000", "2", "0"},
		{"default app user", func(s *Spec) { s.User = "app" }, "0000000000000000", "0000000000000000", "0000000000000000", "00000000a80425fb", "0000000000000000", "2", "0"},
		{"no-new-privileges", func(s *Spec) { s.Security.NoNewPrivileges = true }, "0000000000000000", "00000000a80425fb", "00000000a80425fb", "00000000a80425fb", "0000000000000000", "2", "1"},
		{"seccomp unconfined", func(s *Spec) { s.Security.NoSeccomp = true }, "0000000000000000", "00000000a80425fb", "00000000a80425fb", "00000000a80425fb", "0000000000000000", "0", "0"},
		{"insecure", func(s *Spec) { s.Security.Insecure = true }, "0000000000000000", full, full, full, "0000000000000000", "0", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := procStatus(t, root, tt.edit)
			for _, f := range []struct{ key, want string }{
				{"CapInh", tt.inh}, {"CapPrm", tt.prm}, {"CapEff", tt.eff}, {"CapBnd", tt.bnd}, {"CapAmb", tt.amb},
				{"Seccomp", tt.seccomp}, {"NoNewPrivs", tt.noNewPrivs},
			} {
				if got := st[f.key]; got != f.want {
					t.Errorf("%s = %q, want %q", f.key, got, f.want)
				}
			}
		})
	}
	if DefaultCapabilities != 0xa80425fb {
		t.Errorf("DefaultCapabilities = %#x, want Docker's 0xa80425fb", DefaultCapabilities)
	}
}

// Each escape is tried as root inside the default sandbox and must fail; the same script under
// Insecure shows the attempt itself works where it is allowed (so the test is not vacuous).
func TestRunEscapesFail(t *testing.T) {
	root := newTestRoot(t, true)
	writeFile(t, filepath.Join(root, "m.ko"), "not really a module")
	tests := []struct {
		name     string
		needs    string // a host path the escape needs; skipped where this kernel lacks it
		script   string
		denied   string // in the output under the default sandbox
		insecure string // in the output under Insecure ("" to not try: it would touch the host)
	}{
		{"mount", "", `mkdir -p /mnt; mount -t tmpfs none /mnt 2>&1 && echo MOUNTED`, "permission denied", "MOUNTED"},
		{"unshare (seccomp)", "", `unshare -U true 2>&1 && echo UNSHARED`, "Operation not permitted", "UNSHARED"},
		{"load a module", "", `insmod /m.ko 2>&1; echo`, "Operation not permitted", ""},
		{"write /proc/sysrq-trigger", "/proc/sysrq-trigger", `(echo h > /proc/sysrq-trigger) 2>&1 || echo denied`, "Read-only file system", ""},
		// The value written is the one it has: nothing changes even if the write went through.
		{"write /proc/irq", "/proc/irq/default_smp_affinity", `v=$(cat /proc/irq/default_smp_affinity); (echo $v > /proc/irq/default_smp_affinity) 2>&1`, "Read-only file system", ""},
		{"write /proc/sys", "", `(echo x > /proc/sys/kernel/hostname) 2>&1 && hostname`, "Read-only file system", "x\n"},
		{"read /proc/kcore", "/proc/kcore", `wc -c < /proc/kcore 2>&1`, "0\n", ""},
		{"read /proc/timer_list", "/proc/timer_list", `wc -c < /proc/timer_list 2>&1`, "0\n", ""},
		{"read /proc/keys", "/proc/keys", `wc -c < /proc/keys 2>&1`, "0\n", ""},
		{"list /sys/firmware", "/sys/firmware", `ls -A /sys/firmware | wc -l; touch /sys/firmware/x 2>&1`, "0\n", ""},
		{"write /sys", "", `mkdir /sys/fs/cgroup/x 2>&1 || echo denied`, "denied", ""},
		{"reach the init's fds", "", `ls /proc/1/fd 2>&1; cat /proc/1/environ 2>&1; readlink /proc/1/exe || echo denied`, "denied", ""},
		{"open a made device node in /", "", `mknod /xnull c 1 3 && echo x > /xnull 2>&1 || echo denied`, "Permission denied", ""},
		{"open a made device node in /dev", "", `mknod /dev/xnull c 1 3 && echo x > /dev/xnull 2>&1 || echo denied`, "Permission denied", ""},
		{"open a made device node in a tmpfs", "", `mknod /dev/shm/xnull c 1 3 && echo x > /dev/shm/xnull 2>&1 || echo denied`, "Permission denied", ""},
		{"raise the hard nofile limit", "", `ulimit -H -n 99999999 2>&1 || echo denied`, "denied", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needs != "" {
				if _, err := os.Stat(tt.needs); err != nil {
					t.Skipf("this kernel has no %s", tt.needs)
				}
			}
			out, _ := runShell(t, root, tt.script)
			if !strings.Contains(out, tt.denied) {
				t.Errorf("default sandbox: output %q, want %q in it", out, tt.denied)
			}
			if tt.insecure == "" {
				return
			}
			out, _ = runShell(t, root, tt.script, func(s *Spec) { s.Security.Insecure = true })
			if !strings.Contains(out, tt.insecure) {
				t.Errorf("insecure: output %q, want %q in it", out, tt.insecure)
			}
		})
	}
	for _, p := range []string{"xnull", "j", "mnt"} {
		os.RemoveAll(filepath.Join(root, p))
	}
}

// The seccomp filter denies with EPERM what the capabilities alone would let through (unshare
// of a user namespace needs none), and NoSeccomp lifts it.
func TestRunSeccompDenies(t *testing.T) {
	root := newTestRoot(t, true)
	tests := []struct {
		name   string
		edit   func(*Spec)
		script string
		want   string
	}{
		{"filtered", func(*Spec) {}, `unshare -U true 2>&1 || echo denied`, "unshare(0x10000000): Operation not permitted\ndenied\n"},
		{"filtered as a user", func(s *Spec) { s.User = "app" }, `unshare -U true 2>&1 || echo denied`, "unshare(0x10000000): Operation not permitted\ndenied\n"},
		{"unconfined", func(s *Spec) { s.Security.NoSeccomp = true }, `unshare -U true 2>&1 && echo allowed`, "allowed\n"},
		// clone with namespace flags is refused by argument (the profile's masked-equal rule).
		{"clone newns", func(*Spec) {}, `unshare -m true 2>&1 || echo denied`, "Operation not permitted"},
		// Allowed syscalls do work: the filter is not just "deny".
		{"everyday syscalls", func(*Spec) {}, `mkdir -p /tmp && echo a > /tmp/f && cat /tmp/f && ls /tmp && rm -r /tmp && sleep 0.01 && echo ok`, "a\nf\nok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := runShell(t, root, tt.script, tt.edit)
			if !strings.Contains(out, tt.want) {
				t.Errorf("output %q, want %q", out, tt.want)
			}
		})
	}
}

func TestRunOnlyStandardDevices(t *testing.T) {
	root := newTestRoot(t, true)
	out, err := runShell(t, root, `find /dev -type c -o -type b | sort | tr '\n' ' '`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := "/dev/full /dev/null /dev/pts/ptmx /dev/random /dev/tty /dev/urandom /dev/zero "
	if out != want {
		t.Errorf("devices %q, want %q", out, want)
	}
}

func TestDefaultSeccompProgram(t *testing.T) {
	prog, err := DefaultSeccompProgram(DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) < 100 || len(prog) > 4096 {
		t.Errorf("program of %d instructions", len(prog))
	}
	back := seccompFromBytes(seccompBytes(prog))
	if len(back) != len(prog) || back[len(back)-1] != prog[len(prog)-1] {
		t.Error("program does not survive the config round trip")
	}
	// With CAP_SYS_ADMIN the profile allows more (mount, unshare, ...): a different program.
	admin, err := DefaultSeccompProgram(DefaultCapabilities | 1<<21)
	if err != nil {
		t.Fatal(err)
	}
	if len(admin) == len(prog) {
		t.Error("CAP_SYS_ADMIN did not change the resolved profile")
	}
}

func BenchmarkDefaultSeccompProgram(b *testing.B) {
	for b.Loop() {
		if _, err := DefaultSeccompProgram(DefaultCapabilities); err != nil {
			b.Fatal(err)
		}
	}
}
