// Package runtime runs a RUN step's process in a sandbox: new mount, PID, UTS and IPC namespaces
// (and network, with Network "none": only loopback), pivot_root into the snapshot's root, /proc,
// a minimal /dev, a read-only /sys, the step's bind and tmpfs mounts, and a cgroup of its own
// with the step's limits that is emptied when the step ends.
//
// The process gets Docker's default container privileges: its 14 default capabilities, Docker's
// default seccomp profile (denied syscalls fail with EPERM), runc's masked and read-only /proc
// and /sys paths, and device nodes usable only where bound from the host's /dev (the step's
// writable mounts are nodev). Security.Insecure lifts all of that, as --privileged does.
//
// The sandbox is set up by kiln itself: Run re-executes /proc/self/exe as the sandbox's init
// (see Reexec), which mounts, pivots, starts the step's process and reaps as PID 1.
package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPath is the PATH a process gets when its environment has none (Docker's).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// stdinWaitDelay bounds how long Run waits, once the sandbox is gone, for a Stdin reader that
// blocks; output is never cut, since every writer of it is dead by then.
const stdinWaitDelay = 2 * time.Second

// Spec is one process to run in a sandbox.
type Spec struct {
	ID       string   // names the step's cgroup; unique among running steps
	Root     string   // the root file system, already mounted and writable
	Args     []string // argv; Args[0] is looked up in PATH inside Root when it has no slash
	Env      []string // KEY=VALUE; PATH gets Docker's default when absent
	Cwd      string   // inside Root; created if missing
	User     string   // as USER writes it: name or uid, optionally :group or :gid; "" is root
	Hostname string   // "" means a default
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer

	Network  string   // "host" (also "" and "default") or "none": a network namespace with only loopback
	Mounts   []Mount  // mounted over Root inside the sandbox, in order, after /proc, /dev and /sys
	Limits   Limits   // cgroup limits of the step
	Security Security // privileges of the step's process
}

// Mount is a RUN --mount inside the sandbox.
type Mount struct {
	Type     string // "bind" or "tmpfs"
	Source   string // bind: a host path (a directory, a file or a unix socket)
	Target   string // absolute path inside the sandbox; created (as a stub) when missing
	ReadOnly bool
	Size     int64  // tmpfs: size in bytes, 0 for the kernel's default
	Mode     uint32 // tmpfs: mode of its root, 0 for 01777
}

// Limits are the cgroup limits of a step; zero values mean no limit.
type Limits struct {
	MemoryBytes int64   // --memory
	CPUs        float64 // --cpus: a CPU quota
	CPUShares   uint64  // --cpu-shares: a relative weight
	Pids        int64   // --pids-limit
}

// Security says what the step's process may do beyond Docker's default container privileges.
type Security struct {
	Insecure        bool // RUN --security=insecure: all capabilities, no seccomp, no masked paths
	NoNewPrivileges bool // --security-opt no-new-privileges
	NoSeccomp       bool // --security-opt seccomp=unconfined
}

// ExitError is a process that ran and failed.
type ExitError struct {
	Code   int    // exit status, or 128+signal
	Signal string // the signal's name when it was killed by one
	// OOMKilled: the kernel's OOM killer killed a process of the step, at its memory limit
	// (the process itself, or one it waited for). See IsOutOfMemory.
	OOMKilled bool
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("exit code: %d", e.Code)
	if e.Signal != "" {
		msg = fmt.Sprintf("killed by signal %s", e.Signal)
	}
	if e.OOMKilled {
		return "out of memory: " + msg + " (a process of the step was killed at its memory limit)"
	}
	return msg
}

// Run runs spec's process and waits for it; when it returns, no process of the step is left and
// every mount it made is gone. A non-zero exit is an *ExitError.
//
// Run may create missing mount points in Root (/proc, /dev, /sys, /etc/hosts, ...) and removes
// them again, so Root must not be shared by two Runs at once (each step has its own snapshot).
func Run(ctx context.Context, spec Spec) error {
	return run(ctx, spec, newCgroup)
}

// run is Run with the choice of cgroup version left to the caller (tests try both).
func run(ctx context.Context, spec Spec, newCg func(id string, l Limits) (cgroup, error)) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run %s: %w", spec.ID, err)
	}
	if err := spec.check(); err != nil {
		return err
	}
	usr, err := ResolveUser(spec.Root, spec.User)
	if err != nil {
		return fmt.Errorf("run %s: %w", spec.ID, err)
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = DefaultHostname
	}
	cfg := initConfig{
		Root:     spec.Root,
		Hostname: hostname,
		Cwd:      spec.Cwd,
		Args:     spec.Args,
		Env:      processEnv(spec.Env, usr.Home),
		UID:      usr.UID,
		GID:      usr.GID,
		Groups:   usr.Groups,
	}

	// Deferred first, so it runs last: after the sandbox and its mounts are gone.
	var st stubs
	defer func() { err = joinCleanup(err, st.remove()) }()
	if cfg.NetNS, err = isolatedNetwork(spec.Network); err != nil {
		return fmt.Errorf("run %s: %w", spec.ID, err)
	}
	if err := securityConfig(&cfg, spec.Security); err != nil {
		return fmt.Errorf("run %s: %w", spec.ID, err)
	}
	if err := prepareMountPoints(&cfg, &st, spec.Mounts); err != nil {
		return fmt.Errorf("run %s: %w", spec.ID, err)
	}

	cg, err := newCg(spec.ID, spec.Limits)
	if err != nil {
		return fmt.Errorf("run %s: %w", spec.ID, err)
	}
	defer func() { err = joinCleanup(err, cg.destroy()) }()

	res, err := startAndWait(ctx, spec, cfg, cg)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("run %s: %w", spec.ID, ctxErr)
	}
	if err != nil {
		if cg.oomKilled() {
			// The OOM killer chose the init itself: the step is gone all the same.
			return &ExitError{Code: 128 + int(unix.SIGKILL), Signal: "SIGKILL", OOMKilled: true}
		}
		return fmt.Errorf("run %s: %w", spec.ID, err)
	}
	if res.Code != 0 {
		return &ExitError{Code: res.Code, Signal: res.Signal, OOMKilled: cg.oomKilled()}
	}
	return nil
}

// joinCleanup adds a clean-up failure to err, leaving err as it is (an *ExitError stays one)
// when clean-up went well.
func joinCleanup(err, cleanupErr error) error {
	if cleanupErr == nil {
		return err
	}
	return errors.Join(err, cleanupErr)
}

func (s *Spec) check() error {
	if len(s.Args) == 0 || s.Args[0] == "" {
		return fmt.Errorf("run %s: no command", s.ID)
	}
	if !filepath.IsAbs(s.Root) {
		return fmt.Errorf("run %s: root %q is not an absolute path", s.ID, s.Root)
	}
	fi, err := os.Stat(s.Root)
	if err != nil {
		return fmt.Errorf("run %s: root: %w", s.ID, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("run %s: root %s is not a directory", s.ID, s.Root)
	}
	if len(s.Hostname) > 64 || strings.ContainsAny(s.Hostname, "/ \t\n\x00") {
		return fmt.Errorf("run %s: invalid host name %q", s.ID, s.Hostname)
	}
	if err := s.Limits.check(); err != nil {
		return fmt.Errorf("run %s: %w", s.ID, err)
	}
	return checkCgroupName(s.ID)
}

// processEnv is env with Docker's PATH and the user's HOME added where they are missing.
func processEnv(env []string, home string) []string {
	out := make([]string, 0, len(env)+2)
	hasPath, hasHome := false, false
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		hasPath = hasPath || k == "PATH"
		hasHome = hasHome || k == "HOME"
		out = append(out, kv)
	}
	if !hasPath {
		out = append(out, "PATH="+DefaultPath)
	}
	if !hasHome {
		out = append(out, "HOME="+home)
	}
	return out
}

// prepareMountPoints resolves (and, where missing, creates as stubs) every mount point in the
// root, and adds the sandbox's /etc files and the step's mounts to cfg.
func prepareMountPoints(cfg *initConfig, st *stubs, mounts []Mount) error {
	var err error
	for _, d := range []struct {
		path string
		dst  *string
	}{{"/proc", &cfg.Proc}, {"/dev", &cfg.Dev}, {"/sys", &cfg.Sys}} {
		// BuildKit leaves the /proc, /dev and /sys directories it mounts on in the step's
		// layer when the image lacks them; so does kiln: they are made here, not as stubs.
		if err := keepDir(cfg.Root, d.path); err != nil {
			return err
		}
		if *d.dst, err = st.ensure(cfg.Root, d.path, true); err != nil {
			return err
		}
	}
	files, err := etcFiles(cfg.Hostname, cfg.NetNS)
	if err != nil {
		return err
	}
	for _, f := range files {
		if f.Target, err = st.ensure(cfg.Root, f.Target, false); err != nil {
			return err
		}
		cfg.Files = append(cfg.Files, f)
	}
	if err := prepareUserMounts(cfg, st, mounts); err != nil {
		return err
	}
	st.sealed()
	return nil
}

// startAndWait starts the init in its namespaces and cgroup, hands it cfg and waits for it.
// Cancelling ctx kills the whole cgroup.
func startAndWait(ctx context.Context, spec Spec, cfg initConfig, cg cgroup) (initStatus, error) {
	confR, confW, err := os.Pipe()
	if err != nil {
		return initStatus{}, err
	}
	defer confW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		confR.Close()
		return initStatus{}, err
	}
	defer statR.Close()

	cloneFlags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if cfg.NetNS {
		cloneFlags |= unix.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{initArg0},
		// The init needs no environment (the process gets cfg.Env); one P is all it uses and
		// spares the Go runtime its start-up probing of cgroup CPU limits.
		Env:        []string{"GOMAXPROCS=1"},
		Stdin:      spec.Stdin,
		Stdout:     spec.Stdout,
		Stderr:     spec.Stderr,
		ExtraFiles: []*os.File{confR, statW}, // configFD, statusFD
		WaitDelay:  stdinWaitDelay,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneFlags,
			// If kiln dies, so does the sandbox (and with PID 1, everything in it).
			Pdeathsig: syscall.SIGKILL,
			// Out of the terminal's process group: ^C is kiln's to handle, by cancelling ctx.
			Setpgid: true,
		},
	}
	inCgroup := cg.prepare(cmd.SysProcAttr)
	err = cmd.Start()
	confR.Close()
	statW.Close()
	if err != nil {
		return initStatus{}, fmt.Errorf("start sandbox: %w", err)
	}
	statusCh := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(statR)
		statusCh <- b
	}()

	stop := context.AfterFunc(ctx, func() {
		_ = cg.kill()
		_ = cmd.Process.Kill() // in case it is not in the cgroup yet
	})
	defer stop()

	// The init waits for its config before doing anything, so with v1 it cannot fork before it
	// is in the cgroup.
	var setupErr error
	if !inCgroup {
		setupErr = cg.add(cmd.Process.Pid)
	}
	if setupErr == nil {
		if err := json.NewEncoder(confW).Encode(&cfg); err != nil {
			setupErr = fmt.Errorf("send sandbox config: %w", err)
		}
	}
	confW.Close()
	if setupErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	statusBytes := <-statusCh
	if setupErr != nil {
		return initStatus{}, setupErr
	}

	var st initStatus
	if len(statusBytes) > 0 {
		if err := json.Unmarshal(statusBytes, &st); err != nil {
			return initStatus{}, fmt.Errorf("read sandbox status %q: %w", statusBytes, err)
		}
	}
	switch {
	case st.Error != "" && !st.Exited:
		return initStatus{}, errors.New(st.Error)
	case st.Exited:
		return st, nil
	}
	// No report: the init itself died.
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return initStatus{}, fmt.Errorf("sandbox init killed by signal %s", unix.SignalName(ws.Signal()))
		}
	}
	if waitErr != nil {
		return initStatus{}, fmt.Errorf("sandbox init: %w", waitErr)
	}
	return initStatus{}, errors.New("sandbox init ended without a report")
}

// keepDir makes the directory path (inside root, symlinks resolved within it) when it is
// missing, mode 0755, owned by root.
func keepDir(root, path string) error {
	p, err := SecureJoin(root, path)
	if err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	return nil
}
