package builder

import (
	"context"
	"io"

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
			uid, gid := 0, 0
			if user != "" {
				u, err := kilnrt.ResolveUser(root, user)
				if err != nil {
					return err
				}
				uid, gid = int(u.UID), int(u.GID)
			}
			return fileop.MkdirAll(root, wd, 0o755, uid, gid)
		},
	})
}
