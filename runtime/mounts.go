package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount types of a Mount.
const (
	MountBind  = "bind"
	MountTmpfs = "tmpfs"
)

// userMount is a Spec.Mount as the init applies it. Target is the path inside the root, not yet
// resolved: the init resolves it again once the mounts before it are in place, so that a mount
// may go inside an earlier one (a bind inside a tmpfs).
type userMount struct {
	Type     string `json:"type"`
	Source   string `json:"source,omitempty"`
	Target   string `json:"target"`
	Dir      bool   `json:"dir"` // the target is a directory (else a file, a socket, ...)
	ReadOnly bool   `json:"readOnly,omitempty"`
	Data     string `json:"data,omitempty"` // tmpfs options
	NoDev    bool   `json:"noDev,omitempty"`
}

// maskedPaths are hidden from the step, as runc hides them for Docker: files get /dev/null bound
// over them, directories an empty read-only tmpfs.
func maskedPaths() []string {
	return []string{
		"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
}

// readOnlyPaths are bound read-only onto themselves, as runc does for Docker.
func readOnlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// checkMount refuses a Mount that cannot be made, and tells whether its target is a directory.
func checkMount(m Mount) (dir bool, err error) {
	if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) == "/" {
		return false, fmt.Errorf("mount target %q: want an absolute path other than /", m.Target)
	}
	switch m.Type {
	case MountBind:
		if !filepath.IsAbs(m.Source) {
			return false, fmt.Errorf("bind mount onto %s: source %q is not an absolute path", m.Target, m.Source)
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return false, fmt.Errorf("bind mount onto %s: %w", m.Target, err)
		}
		return fi.IsDir(), nil
	case MountTmpfs:
		if m.Source != "" {
			return false, fmt.Errorf("tmpfs mount onto %s: a tmpfs has no source (got %q)", m.Target, m.Source)
		}
		if m.Size < 0 {
			return false, fmt.Errorf("tmpfs mount onto %s: negative size %d", m.Target, m.Size)
		}
		if m.Mode&^0o7777 != 0 {
			return false, fmt.Errorf("tmpfs mount onto %s: invalid mode %#o", m.Target, m.Mode)
		}
		return true, nil
	}
	return false, fmt.Errorf("mount onto %s: unknown type %q: want bind or tmpfs", m.Target, m.Type)
}

// prepareUserMounts checks spec's mounts, creates their missing targets in the root as stubs
// (removed after the step, so they never land in its layer) and adds them to cfg.
func prepareUserMounts(cfg *initConfig, st *stubs, mounts []Mount) error {
	for _, m := range mounts {
		dir, err := checkMount(m)
		if err != nil {
			return err
		}
		if _, err := st.ensure(cfg.Root, m.Target, dir); err != nil {
			return err
		}
		um := userMount{Type: m.Type, Source: m.Source, Target: filepath.Clean(m.Target), Dir: dir, ReadOnly: m.ReadOnly,
			NoDev: !cfg.Insecure}
		if m.Type == MountTmpfs {
			mode := m.Mode
			if mode == 0 {
				mode = 0o1777
			}
			um.Data = fmt.Sprintf("mode=%o", mode)
			if m.Size > 0 {
				um.Data += fmt.Sprintf(",size=%d", m.Size)
			}
		}
		cfg.Mounts = append(cfg.Mounts, um)
	}
	return nil
}

// mountUser makes one of the spec's mounts in the init, before pivot_root. The target is resolved
// inside root as things are now; a target missing here lies inside an earlier mount (the stubs in
// the image are hidden by it), so it is made there, where it goes away with that mount.
func mountUser(root string, m userMount) error {
	p, err := SecureJoin(root, m.Target)
	if err != nil {
		return fmt.Errorf("mount onto %s: %w", m.Target, err)
	}
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		if err := makeMountPoint(p, m.Dir); err != nil {
			return fmt.Errorf("mount onto %s: %w", m.Target, err)
		}
	}
	switch m.Type {
	case MountBind:
		if err := unix.Mount(m.Source, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s onto %s: %w", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			if err := readOnlyTree(p); err != nil {
				return fmt.Errorf("bind %s onto %s: %w", m.Source, m.Target, err)
			}
		}
		if m.NoDev {
			if err := noDev(p); err != nil {
				return fmt.Errorf("bind %s onto %s: %w", m.Source, m.Target, err)
			}
		}
	case MountTmpfs:
		flags := uintptr(unix.MS_NOSUID)
		if m.NoDev {
			flags |= unix.MS_NODEV
		}
		if m.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", flags, m.Data); err != nil {
			return fmt.Errorf("mount tmpfs onto %s: %w", m.Target, err)
		}
	default:
		return fmt.Errorf("mount onto %s: unknown type %q", m.Target, m.Type)
	}
	return nil
}

// makeMountPoint creates p (and its missing parents) as a directory or an empty file.
func makeMountPoint(p string, dir bool) error {
	if dir {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// readOnlyTree makes the mount at p and every mount below it read-only. A bind's MS_REMOUNT
// would change only the top one and leave submounts of a recursive bind writable.
func readOnlyTree(p string) error {
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	err := unix.MountSetattr(-1, p, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, attr)
	if err == nil {
		return nil
	}
	if err != unix.ENOSYS {
		return fmt.Errorf("make read-only: %w", err)
	}
	// Before Linux 5.12: the top mount only.
	if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("make read-only: %w", err)
	}
	return nil
}

// maskPaths hides maskedPaths and makes readOnlyPaths read-only under the new root's /proc (proc)
// and /sys (sys), which are fresh mounts of the init's own, so no path here can lead elsewhere.
func maskPaths(proc, sys string) error {
	under := func(p string) string {
		if rest, ok := strings.CutPrefix(p, "/proc/"); ok {
			return filepath.Join(proc, rest)
		}
		return filepath.Join(sys, strings.TrimPrefix(p, "/sys/"))
	}
	for _, m := range maskedPaths() {
		p := under(m)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // this kernel has none
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", m, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=555")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", m, err)
		}
	}
	for _, r := range readOnlyPaths() {
		p := under(r)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", r, err)
		}
		// proc's nosuid, nodev and noexec go with a bind's remount.
		const flags = unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
		if err := unix.Mount("", p, "", flags, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", r, err)
		}
	}
	return nil
}
