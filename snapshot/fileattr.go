package snapshot

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// attrs are the attributes of a file that a layer carries.
type attrs struct {
	mode   uint32 // permission and set-id/sticky bits
	uid    int
	gid    int
	xattrs map[string]string
	mtime  time.Time
	atime  time.Time // zero: same as mtime
}

// setAttrs gives the file at path (not following a symlink) its owner, mode, xattrs and, unless
// skipTimes, times. The order matters: chown clears set-id bits and security.capability.
func setAttrs(path string, isLink bool, a attrs, skipTimes bool) error {
	if err := unix.Lchown(path, a.uid, a.gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	if !isLink {
		if err := unix.Chmod(path, a.mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	if err := setXattrs(path, a.xattrs); err != nil {
		return err
	}
	if skipTimes {
		return nil
	}
	return setTimes(path, a.mtime, a.atime)
}

func setTimes(path string, mtime, atime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}

// statAttrs reads the attributes of path from its stat and xattrs.
func statAttrs(path string, st *unix.Stat_t) (attrs, error) {
	xs, err := listXattrs(path)
	if err != nil {
		return attrs{}, err
	}
	return attrs{
		mode:   st.Mode & 0o7777,
		uid:    int(st.Uid),
		gid:    int(st.Gid),
		xattrs: xs,
		mtime:  time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		atime:  time.Unix(st.Atim.Sec, st.Atim.Nsec),
	}, nil
}
