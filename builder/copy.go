package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"kiln/builder/fileop"
	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// copyCmd is what COPY and ADD share.
type copyCmd struct {
	cmd          instructions.Command
	sd           instructions.SourcesAndDest
	from         string
	chown, chmod string
	add          bool
}

func (c copyCmd) name() string {
	if c.add {
		return "ADD"
	}
	return "COPY"
}

// copy is COPY and ADD: sources from the context, a stage or an image, into the stage's snapshot.
func (bd *build) copy(ctx context.Context, st *stageState, c copyCmd, label string) error {
	if len(c.sd.SourceContents) > 0 {
		return fmt.Errorf("%s with a heredoc is not supported yet", c.name())
	}
	var mode *os.FileMode
	if c.chmod != "" {
		m, err := strconv.ParseUint(c.chmod, 8, 32)
		if err != nil || m > 07777 {
			return fmt.Errorf("invalid --chmod=%s: only octal modes are supported", c.chmod)
		}
		fm := fileModeFromUnix(uint32(m))
		mode = &fm
	}
	createdBy := c.name()
	if c.chown != "" {
		createdBy += " --chown=" + c.chown
	}
	if c.chmod != "" {
		createdBy += " --chmod=" + c.chmod
	}
	createdBy += " " + strings.Join(append(append([]string{}, c.sd.SourcePaths...), c.sd.DestPath), " ") + " # buildkit"

	spec := fileop.Spec{
		Sources:     c.sd.SourcePaths,
		Dest:        c.sd.DestPath,
		Workdir:     st.img.Config.WorkingDir,
		Chmod:       mode,
		Extract:     c.add,
		Instruction: c.name(),
	}
	// The source's identity in the key: the content checksum for the context, the snapshot's
	// chain ID (content too) for a stage or an image.
	var source string
	var view func(ctx context.Context) (string, func() error, error)
	if c.from == "" {
		spec.SrcRoot, spec.Ignore = bd.opts.ContextDir, bd.ignore
		sum, err := fileop.Checksum(ctx, spec)
		if err != nil {
			return err
		}
		source = "context:" + sum.String()
		view = func(context.Context) (string, func() error, error) {
			return bd.opts.ContextDir, func() error { return nil }, nil
		}
	} else {
		var layers = st.layers[:0:0]
		if j, ok := bd.stageIndex(c.from, st.index); ok {
			src, err := bd.stage(ctx, j)
			if err != nil {
				return err
			}
			layers = src.layers
		} else if _, ok := bd.stageIndexAny(c.from); ok {
			return fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage", c.from)
		} else {
			img, err := bd.resolveImage(ctx, c.from)
			if err != nil {
				return err
			}
			layers = img.Layers
		}
		source = "snapshot:" + chainOf(layers)
		spec.KeepOwners = true // files from a stage or an image keep their owners, as in BuildKit
		view = func(ctx context.Context) (string, func() error, error) {
			chain, err := bd.ensureChain(ctx, layers)
			if err != nil {
				return "", nil, err
			}
			if chain == "" {
				dir, err := os.MkdirTemp(bd.b.Store.TmpDir(), "scratch-")
				return dir, func() error { return os.Remove(dir) }, err
			}
			return bd.b.Snaps.View(ctx, chain)
		}
	}
	key := stepKey("copy", st.chain, source, c.name(), c.sd.SourcePaths, c.sd.DestPath, spec.Workdir, c.chown, c.chmod)
	return bd.layerStep(ctx, st, layerStep{
		label: label, createdBy: createdBy, key: key,
		work: func(ctx context.Context, root string, _ io.Writer) error {
			if c.chown != "" {
				o, err := resolveChown(root, c.chown)
				if err != nil {
					return err
				}
				spec.Chown = &o
			}
			src, release, err := view(ctx)
			if err != nil {
				return err
			}
			defer release()
			spec.SrcRoot, spec.DestRoot = src, root
			return fileop.Copy(ctx, spec)
		},
	})
}

// stageIndexAny finds a stage by name anywhere in the Dockerfile.
func (bd *build) stageIndexAny(ref string) (int, bool) {
	return bd.stageIndex(ref, len(bd.df.Stages))
}

// resolveChown resolves --chown=user[:group] in the image's own passwd and group files. As in
// Docker, a user without a group means the group with the user's numeric ID.
func resolveChown(root, spec string) (fileop.Owner, error) {
	user, group, hasGroup := strings.Cut(spec, ":")
	u, err := kilnrt.ResolveUser(root, user)
	if err != nil {
		return fileop.Owner{}, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	if !hasGroup {
		return fileop.Owner{UID: int(u.UID), GID: int(u.UID)}, nil
	}
	ug, err := kilnrt.ResolveUser(root, user+":"+group)
	if err != nil {
		return fileop.Owner{}, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	return fileop.Owner{UID: int(ug.UID), GID: int(ug.GID)}, nil
}

// fileModeFromUnix turns permission bits (with setuid, setgid, sticky) into an os.FileMode.
func fileModeFromUnix(m uint32) os.FileMode {
	fm := os.FileMode(m & 0777)
	if m&04000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&02000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&01000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
