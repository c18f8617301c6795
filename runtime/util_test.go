package runtime

import (
	"os"
	"syscall"
)

// fileOwner returns the uid and gid of fi.
func fileOwner(fi os.FileInfo) (uint32, uint32) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return st.Uid, st.Gid
}
