package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"kiln/builder/fileop"
	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// workdir is WORKDIR: it sets the working directory and, as BuildKit does, creates it (owned by
// the current USER), which makes a layer when the directory was missing.
func (bd *build) workdir(ctx context.Context, st *stageState, c *instructions.WorkdirCommand, label string) error {
	wd := workdirPath(st.img.Config.WorkingDir, c.Path)
	st.img.Config.WorkingDir = wd
	createdBy := "WORKDIR " + wd
	if wd == "/" {
		st.history(createdBy, true)
		return nil
	}
	user := st.img.Config.User
	key := stepKey("workdir", st.chain, wd, user)
	return bd.layerStep(ctx, st, layerStep{
		label: label, createdBy: createdBy, key: key,
		work: func(ctx context.Context, root string, _ io.Writer) error {
			uid, gid := -1, -1
			if user != "" {
				u, err := kilnrt.ResolveUser(root, user)
				if err != nil {
					return err
				}
				uid, gid = int(u.UID), int(u.GID)
			}
			return mkdirAll(root, wd, uid, gid)
		},
	})
}

// mkdirAll creates dir inside root (symlinks resolved within root), each new directory 0755 and
// owned by uid:gid when uid >= 0.
func mkdirAll(root, dir string, uid, gid int) error {
	cur := "/"
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if part == "" {
			continue
		}
		cur = strings.TrimSuffix(cur, "/") + "/" + part
		p, err := fileop.SecureJoin(root, cur)
		if err != nil {
			return fmt.Errorf("mkdir %s: %w", cur, err)
		}
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("mkdir %s: not a directory", cur)
			}
			continue
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", cur, err)
		}
		if uid >= 0 {
			if err := os.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("chown %s: %w", cur, err)
			}
		}
	}
	return nil
}
