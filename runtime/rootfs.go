package runtime

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// devNodes are the device nodes of the sandbox's /dev, bound from the host's (binding works in
// user namespaces too, where mknod does not).
func devNodes() []string { return []string{"null", "zero", "full", "random", "urandom", "tty"} }

// devLinks are the symlinks of the sandbox's /dev.
func devLinks() [][2]string {
	return [][2]string{
		{"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"},
		{"pts/ptmx", "ptmx"},
	}
}

// setupRoot runs in the init, in its new mount namespace: it brings up loopback in a network
// namespace of its own, mounts /proc, /dev, /sys, the /etc files, the masks and the step's
// mounts into the root, makes the root "/" with pivot_root, sets the host name and enters
// the working directory. Every mount lives and dies with this namespace.
func setupRoot(c *initConfig) error {
	if c.NetNS {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	// Nothing done here may reach the host's mount table.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(c.Root, c.Root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind root %s: %w", c.Root, err)
	}
	// Root may make device nodes (CAP_MKNOD, as in Docker), but not open them: Docker's devices
	// cgroup, here the nodev flag on every mount the step can write to. Only the standard nodes,
	// bound one by one from the host's /dev, open.
	if !c.Insecure {
		if err := noDev(c.Root); err != nil {
			return err
		}
	}
	if err := unix.Mount("proc", c.Proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := setupDev(c.Dev); err != nil {
		return err
	}
	if err := mountSys(c.Sys, c.Insecure); err != nil {
		return err
	}
	if err := mountFiles(c.Dev, c.Files); err != nil {
		return err
	}
	// Masked before the step's mounts, while /proc and /sys are surely the init's own.
	if c.Mask {
		if err := maskPaths(c.Proc, c.Sys); err != nil {
			return err
		}
	}
	for _, m := range c.Mounts {
		if err := mountUser(c.Root, m); err != nil {
			return err
		}
	}
	if err := pivotRoot(c.Root); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
		return fmt.Errorf("set host name: %w", err)
	}
	cwd := filepath.Join("/", c.Cwd)
	// Created as root, as Docker does; it stays in the layer.
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return fmt.Errorf("create working directory %s: %w", cwd, err)
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("enter working directory %s: %w", cwd, err)
	}
	return nil
}

// setupDev mounts a small tmpfs at dev holding only what a build needs.
func setupDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, n := range devNodes() {
		p := filepath.Join(dev, n)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return fmt.Errorf("create /dev/%s: %w", n, err)
		}
		f.Close()
		if err := unix.Mount("/dev/"+n, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", n, err)
		}
	}
	mounts := []struct {
		name, fstype string
		mode         os.FileMode
		flags        uintptr
		data         string
	}{
		{"pts", "devpts", 0o755, unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "tmpfs", 0o1777, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=1777,size=65536k"},
		{"mqueue", "mqueue", 0o755, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}
	for _, m := range mounts {
		p := filepath.Join(dev, m.name)
		if err := os.Mkdir(p, m.mode); err != nil {
			return fmt.Errorf("create /dev/%s: %w", m.name, err)
		}
		if err := unix.Mount(m.fstype, p, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount /dev/%s: %w", m.name, err)
		}
	}
	for _, l := range devLinks() {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return fmt.Errorf("create /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

// mountSys mounts a read-only sysfs at sys, or, where a fresh sysfs is refused, the host's
// /sys made read-only as a whole tree. An insecure step gets it writable, as --privileged does.
func mountSys(sys string, writable bool) error {
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if writable {
		flags &^= unix.MS_RDONLY
	}
	err := unix.Mount("sysfs", sys, "sysfs", flags, "")
	if err == nil {
		return nil
	}
	if err := unix.Mount("/sys", sys, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	if writable {
		return nil
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(-1, sys, unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("make /sys read-only: %w", err)
	}
	return nil
}

// mountFiles writes each file into the sandbox's /dev tmpfs (dev), binds it read-only onto its
// target and unlinks it again: the bind mount keeps the file alive, in memory, seen only at
// its target. So no file is written on the host's disk nor in the image for it.
func mountFiles(dev string, files []fileMount) error {
	for i, f := range files {
		src := filepath.Join(dev, fmt.Sprintf(".kiln-file-%d", i))
		if err := os.WriteFile(src, f.Content, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.Target, err)
		}
		if err := bind(src, f.Target, true); err != nil {
			return err
		}
		if err := os.Remove(src); err != nil {
			return fmt.Errorf("unlink %s: %w", src, err)
		}
	}
	return nil
}

// bind mounts source onto target, read-only if asked.
func bind(source, target string, readOnly bool) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto %s: %w", source, target, err)
	}
	if !readOnly {
		return nil
	}
	const flags = unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// pivotRoot makes root the new "/" and detaches the old one. pivot_root(".", ".") stacks the old
// root on top of the new one, so no directory for it has to be made inside the image.
func pivotRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("enter root %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("enter new root: %w", err)
	}
	return nil
}

// noDev sets nodev on the mount at p and every mount below it, keeping their other flags.
func noDev(p string) error {
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV}
	err := unix.MountSetattr(-1, p, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, attr)
	if err == unix.ENOSYS {
		// Before Linux 5.12: remount the top one with the flags it has, plus nodev.
		var st unix.Statfs_t
		if err = unix.Statfs(p, &st); err == nil {
			flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NODEV)
			for _, f := range [][2]uintptr{{unix.ST_RDONLY, unix.MS_RDONLY}, {unix.ST_NOSUID, unix.MS_NOSUID},
				{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_RELATIME, unix.MS_RELATIME}} {
				if uintptr(st.Flags)&f[0] != 0 {
					flags |= f[1]
				}
			}
			err = unix.Mount("", p, "", flags, "")
		}
	}
	if err != nil {
		return fmt.Errorf("make %s nodev: %w", p, err)
	}
	return nil
}
