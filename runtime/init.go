package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// initSetupFailed is the init's exit code when the step's process could not be started.
const initSetupFailed = 125

// runInit is the sandbox's PID 1: it sets up the root, starts the step's process, reaps every
// process that ends in the namespace and exits once the step's process has, reporting how it
// ended. Leaving PID 1 makes the kernel kill whatever else is still running in the namespace.
func runInit() int {
	// Nothing but stdio may reach the step's process: not the pipes, nor any fd kiln itself
	// inherited without close-on-exec (exec.Cmd passes those through).
	closeOnExecFrom(configFD)
	// Non-dumpable: the step's root (without CAP_SYS_PTRACE) cannot reach /proc/1/fd (the
	// status pipe), /proc/1/exe (kiln's binary) nor /proc/1/environ. An exec makes the step's
	// own processes dumpable again.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	status := os.NewFile(statusFD, "status")
	report := func(st initStatus) {
		_ = json.NewEncoder(status).Encode(st)
	}
	fail := func(err error) int {
		report(initStatus{Error: err.Error()})
		return initSetupFailed
	}

	var cfg initConfig
	conf := os.NewFile(configFD, "config")
	if err := json.NewDecoder(conf).Decode(&cfg); err != nil {
		return fail(fmt.Errorf("read sandbox config: %w", err))
	}
	conf.Close()
	if err := setupRoot(&cfg); err != nil {
		return fail(err)
	}
	path, err := lookPath(cfg.Args[0], envValue(cfg.Env, "PATH"))
	if err != nil {
		return fail(err)
	}
	// Privileges are a thread's: the step's process gets those of the thread that forks it.
	goruntime.LockOSThread()
	if err := dropPrivileges(&cfg); err != nil {
		return fail(err)
	}
	pid, err := syscall.ForkExec(path, cfg.Args, &syscall.ProcAttr{
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Setsid:     true,
			Credential: &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, Groups: cfg.Groups},
		},
	})
	if err != nil {
		return fail(fmt.Errorf("exec %s: %w", cfg.Args[0], err))
	}
	st := reap(pid)
	report(st)
	return st.Code
}

// closeOnExecFrom marks every fd from first up close-on-exec.
func closeOnExecFrom(first int) {
	if unix.CloseRange(uint(first), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	// Before Linux 5.11: one by one.
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= first {
			syscall.CloseOnExec(fd)
		}
	}
}

// reap waits for every child that ends (orphans are re-parented to PID 1) until main does.
func reap(main int) initStatus {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// ECHILD: main is gone without us seeing it, which cannot happen; report a failure.
			return initStatus{Exited: true, Code: 255, Error: fmt.Sprintf("wait: %v", err)}
		}
		if pid != main {
			continue
		}
		switch {
		case ws.Exited():
			return initStatus{Exited: true, Code: ws.ExitStatus()}
		case ws.Signaled():
			return initStatus{Exited: true, Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal())}
		}
	}
}

// lookPath finds an executable as execvp does, in the new root: a name with a slash is taken as
// it is, else each PATH entry is tried in order.
func lookPath(name, path string) (string, error) {
	if name == "" {
		return "", errors.New(`exec: "": empty command`)
	}
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			if !strings.Contains(p, "/") {
				p = "./" + p
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// envValue returns the value of key in env (the last one wins, as getenv sees it).
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}
