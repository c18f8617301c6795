package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// overlayMount says what to mount: lowers topmost first; upper and work empty for a read-only view.
type overlayMount struct {
	lowers []string
	upper  string
	work   string
	target string
}

// Options that keep upper dirs plain: a renamed dir is copied up whole (no redirect xattrs), a
// chmod copies the data too (no metacopy), and hardlinks need no index dir.
var overlayFlags = []string{"index=off", "redirect_dir=off", "metacopy=off"}

// mountOverlay mounts o. It uses the new mount API, one "lowerdir+" per layer, so a chain of any
// depth fits; where the kernel lacks that, it falls back to mount(2) with lower paths relative to
// the common directory of the lowers, made the cwd of a thread of its own.
func mountOverlay(o overlayMount) error {
	err := mountOverlayFsconfig(o)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, errFsconfigParam) {
		if err2 := mountOverlayLegacy(o); err2 != nil {
			return fmt.Errorf("mount overlay on %s: %w (new mount API: %v)", o.target, err2, err)
		}
		return nil
	}
	return fmt.Errorf("mount overlay on %s: %w", o.target, err)
}

var errFsconfigParam = errors.New("overlay parameter refused")

func mountOverlayFsconfig(o overlayMount) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	set := func(k, v string) error {
		if err := unix.FsconfigSetString(fd, k, v); err != nil {
			return fmt.Errorf("%w: %s=%s: %v%s", errFsconfigParam, k, v, err, fsLog(fd))
		}
		return nil
	}
	for _, l := range o.lowers {
		if err := set("lowerdir+", l); err != nil {
			return err
		}
	}
	if o.upper != "" {
		if err := set("upperdir", o.upper); err != nil {
			return err
		}
		if err := set("workdir", o.work); err != nil {
			return err
		}
	}
	for _, f := range overlayFlags {
		k, v, _ := strings.Cut(f, "=")
		if err := set(k, v); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create overlay: %w%s", err, fsLog(fd))
	}
	attr := 0
	if o.upper == "" {
		attr = unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w%s", err, fsLog(fd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, o.target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount overlay to %s: %w", o.target, err)
	}
	return nil
}

// fsLog reads the messages the kernel left on an fs context, which say why a parameter failed.
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, string(buf[:n]))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

func mountOverlayLegacy(o overlayMount) error {
	base := commonDir(append(append([]string{}, o.lowers...), o.upper, o.work))
	rel := func(p string) string {
		if p == "" {
			return ""
		}
		r, err := filepath.Rel(base, p)
		if err != nil {
			return p
		}
		return r
	}
	lows := make([]string, len(o.lowers))
	for i, l := range o.lowers {
		lows[i] = rel(l)
	}
	data := "lowerdir=" + strings.Join(lows, ":")
	if o.upper != "" {
		data += ",upperdir=" + rel(o.upper) + ",workdir=" + rel(o.work)
	}
	data += "," + strings.Join(overlayFlags, ",")
	if len(data) >= os.Getpagesize() {
		return fmt.Errorf("overlay options are %d bytes, over the one-page limit of mount(2)", len(data))
	}
	var flags uintptr
	if o.upper == "" {
		flags = unix.MS_RDONLY
	}
	target, err := filepath.Abs(o.target)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		// This thread gets a cwd of its own and is never given back to the scheduler
		// (no UnlockOSThread), so it ends with the goroutine and no other code sees that cwd.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Chdir(base); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", base, err)
			return
		}
		errc <- unix.Mount("overlay", target, "overlay", flags, data)
	}()
	return <-errc
}

// commonDir is the longest directory prefix of the absolute paths ps.
func commonDir(ps []string) string {
	var c string
	first := true
	for _, p := range ps {
		if p == "" {
			continue
		}
		d := filepath.Dir(p)
		if first {
			c, first = d, false
			continue
		}
		for c != "/" && !strings.HasPrefix(d+"/", c+"/") {
			c = filepath.Dir(c)
		}
	}
	if c == "" {
		return "/"
	}
	return c
}

// unmount unmounts target, retrying a moment while it is busy (a process of the build may still be
// exiting), and detaching it as the last resort.
func unmount(target string) error {
	var err error
	for i := range 50 {
		err = unix.Unmount(target, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // EINVAL: not a mount point (already unmounted)
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond)
	}
	if err2 := unix.Unmount(target, unix.MNT_DETACH); err2 == nil {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

// unmountAll detaches every mount at or under dir (left by a crash), deepest first.
func unmountAll(dir string) {
	pts, err := mountsUnder(dir)
	if err != nil {
		return
	}
	for i := len(pts) - 1; i >= 0; i-- {
		unix.Unmount(pts[i], unix.MNT_DETACH)
	}
}

// mountsUnder lists the mount points at or under dir, in mount order.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			if v, ok := octal3(s[i+1:]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	if len(s) < 3 {
		return 0, false
	}
	var v int
	for _, c := range s[:3] {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), true
}

// probeOverlay checks that an overlay mount with an upper dir works in dir.
func probeOverlay(dir string) error {
	p, err := os.MkdirTemp(dir, "probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(p)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(p, d), 0o755); err != nil {
			return err
		}
	}
	o := overlayMount{
		lowers: []string{filepath.Join(p, "lower")},
		upper:  filepath.Join(p, "upper"),
		work:   filepath.Join(p, "work"),
		target: filepath.Join(p, "merged"),
	}
	if err := mountOverlay(o); err != nil {
		return err
	}
	return unmount(o.target)
}
