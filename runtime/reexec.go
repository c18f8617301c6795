package runtime

import (
	"fmt"
	"os"
)

// initArg0 is the argv[0] the sandbox init is started with: Reexec recognises it.
const initArg0 = "kiln-sandbox-init"

// The init's extra file descriptors (after stdin, stdout, stderr).
const (
	configFD = 3 // the parent writes initConfig as JSON here, then closes it
	statusFD = 4 // the init writes one initStatus as JSON here
)

// initConfig is everything the init needs, sent over a pipe so that none of it (the step's env
// may hold secrets) shows in the argv or environment of any process. Paths are host paths,
// already resolved inside the root.
type initConfig struct {
	Root     string      `json:"root"`
	Proc     string      `json:"proc"`
	Dev      string      `json:"dev"`
	Sys      string      `json:"sys"`
	Files    []fileMount `json:"files,omitempty"`
	Mounts   []userMount `json:"mounts,omitempty"`
	Hostname string      `json:"hostname"`
	Cwd      string      `json:"cwd"` // inside the new root
	Args     []string    `json:"args"`
	Env      []string    `json:"env"`
	UID      uint32      `json:"uid"`
	GID      uint32      `json:"gid"`
	Groups   []uint32    `json:"groups,omitempty"`

	NetNS      bool   `json:"netns,omitempty"`    // in a network namespace of its own: bring up lo
	Mask       bool   `json:"mask,omitempty"`     // mask maskedPaths, make readOnlyPaths read-only
	Insecure   bool   `json:"insecure,omitempty"` // writable /sys, device nodes usable (--privileged)
	Caps       uint64 `json:"caps"`               // the capability sets of the process, a bit per capability
	NoNewPrivs bool   `json:"noNewPrivs,omitempty"`
	Seccomp    []byte `json:"seccomp,omitempty"` // a BPF program (struct sock_filter[]), none when empty
}

// fileMount is a small file the init makes (in memory, outside the root) and binds
// read-only onto Target.
type fileMount struct {
	Target  string `json:"target"`
	Content []byte `json:"content"`
}

// initStatus is the init's report: a set-up error (the process never ran), or how the
// process ended.
type initStatus struct {
	Error  string `json:"error,omitempty"`
	Exited bool   `json:"exited,omitempty"`
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"`
}

// Reexec runs the sandbox init when this process was started as one, and then exits; it
// returns false otherwise. Every binary that calls Run must call Reexec first thing in main
// (and tests in TestMain), because Run starts the sandbox by re-executing /proc/self/exe.
func Reexec() bool {
	if len(os.Args) == 0 || os.Args[0] != initArg0 {
		return false
	}
	if os.Getpid() != 1 {
		// Only Run starts the init, always as PID 1 of a new PID namespace.
		fmt.Fprintf(os.Stderr, "%s: not started by kiln\n", initArg0)
		os.Exit(125)
	}
	os.Exit(runInit())
	return true
}
