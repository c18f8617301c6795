package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// capabilityNames are the capabilities by number (linux/capability.h).
func capabilityNames() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
		"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
		"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
		"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
		"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

// DefaultCapabilities is Docker's default capability set for containers, a bit per capability
// (0x00000000a80425fb): CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW, SETGID, SETUID,
// SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL and AUDIT_WRITE.
const DefaultCapabilities uint64 = 1<<unix.CAP_CHOWN | 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_FSETID |
	1<<unix.CAP_FOWNER | 1<<unix.CAP_MKNOD | 1<<unix.CAP_NET_RAW | 1<<unix.CAP_SETGID |
	1<<unix.CAP_SETUID | 1<<unix.CAP_SETFCAP | 1<<unix.CAP_SETPCAP | 1<<unix.CAP_NET_BIND_SERVICE |
	1<<unix.CAP_SYS_CHROOT | 1<<unix.CAP_KILL | 1<<unix.CAP_AUDIT_WRITE

// capNames lists the names of the capabilities in caps.
func capNames(caps uint64) []string {
	var out []string
	for i, n := range capabilityNames() {
		if caps&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// lastCap is the highest capability this kernel knows.
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read last capability: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("read last capability: bad value %q", b)
	}
	return n, nil
}

// allCapabilities is every capability kiln itself holds (--privileged cannot give more).
func allCapabilities() (uint64, error) {
	perm, err := permittedCapabilities()
	if err != nil {
		return 0, err
	}
	n, err := lastCap()
	if err != nil {
		return 0, err
	}
	if n < 63 {
		perm &= 1<<(n+1) - 1
	}
	return perm, nil
}

// permittedCapabilities is the calling thread's permitted set.
func permittedCapabilities() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	return uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32, nil
}

// securityConfig fills the privileges part of the init's config from sec.
func securityConfig(cfg *initConfig, sec Security) error {
	cfg.NoNewPrivs = sec.NoNewPrivileges
	if sec.Insecure {
		all, err := allCapabilities()
		if err != nil {
			return err
		}
		cfg.Caps, cfg.Insecure = all, true
		return nil
	}
	cfg.Caps, cfg.Mask = DefaultCapabilities, true
	if sec.NoSeccomp {
		return nil
	}
	prog, err := defaultSeccomp()
	if err != nil {
		return err
	}
	cfg.Seccomp = prog
	return nil
}

// defaultSeccomp is the default program for DefaultCapabilities, compiled once per process (a
// millisecond and a quarter megabyte each time otherwise): the profile, the capabilities and
// the kernel it is resolved for do not change, so neither does the program. Read-only after.
var defaultSeccomp = sync.OnceValues(func() ([]byte, error) {
	prog, err := DefaultSeccompProgram(DefaultCapabilities)
	return seccompBytes(prog), err
})

// dropPrivileges runs in the init on the (locked) thread that forks the step's process, which
// inherits all of it: the bounding set shrinks to c.Caps, ambient and inheritable sets are
// emptied, no_new_privs is set if asked, the seccomp filter installed, and the effective and
// permitted sets become c.Caps. Root's process then execs with exactly c.Caps; any other user's
// with none, as in Docker.
func dropPrivileges(c *initConfig) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	// What kiln lacks, the step cannot have either (capset would refuse it).
	perm, err := permittedCapabilities()
	if err != nil {
		return err
	}
	caps := c.Caps & perm
	for i := 0; i <= last; i++ {
		if caps&(1<<i) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(i), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", i, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if c.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	// Loaded while CAP_SYS_ADMIN is still effective, so no_new_privs is not forced on the step.
	if prog := seccompFromBytes(c.Seccomp); len(prog) > 0 {
		if err := loadSeccomp(prog); err != nil {
			return err
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		set := uint32(caps >> (32 * i))
		data[i] = unix.CapUserData{Effective: set, Permitted: set}
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}
