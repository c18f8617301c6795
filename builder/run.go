package builder

import (
	"context"
	"fmt"
	"io"
	"strings"

	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// run is RUN: the command runs in the sandbox over the stage's snapshot; what it changes is the
// step's layer.
func (bd *build) run(ctx context.Context, st *stageState, c *instructions.RunCommand, label string) error {
	if len(c.Files) > 0 {
		return fmt.Errorf("RUN with a heredoc is not supported yet")
	}
	if len(c.FlagsUsed) > 0 {
		return fmt.Errorf("RUN --%s is not supported yet", c.FlagsUsed[0])
	}
	args := c.CmdLine
	if c.PrependShell {
		args = withShell(st, args)
	}
	if len(args) == 0 {
		return fmt.Errorf("RUN has no command")
	}
	cfg := st.img.Config
	runEnv := []string(st.runEnv)
	createdBy := "RUN " + runCommandString(args, st.argList, st.runEnv) + " # buildkit"
	network := bd.opts.Network
	key := stepKey("run", st.chain, args, runEnv, cfg.WorkingDir, cfg.User, network)
	return bd.layerStep(ctx, st, layerStep{
		label: label, createdBy: createdBy, key: key,
		work: func(ctx context.Context, root string, out io.Writer) error {
			err := kilnrt.Run(ctx, kilnrt.Spec{
				ID:     key.Encoded()[:16],
				Root:   root,
				Args:   args,
				Env:    runEnv,
				Cwd:    cfg.WorkingDir,
				User:   cfg.User,
				Stdout: out,
				Stderr: out,

				Network:  network,
				Limits:   bd.opts.Limits,
				Security: bd.opts.Security,
			})
			if err != nil {
				return fmt.Errorf("process %q did not complete successfully: %w", strings.Join(args, " "), err)
			}
			return nil
		},
	})
}

// runCommandString is the RUN history text as BuildKit writes it: "|N K=V ... cmd" when build
// args are in scope, so the history shows what the command ran with.
func runCommandString(args []string, buildArgs []instructions.KeyValuePairOptional, e shell.EnvGetter) string {
	var parts []string
	idx := map[string]int{}
	for _, a := range buildArgs {
		v, ok := e.Get(a.Key)
		if !ok {
			v = a.ValueString()
		}
		if i, ok := idx[a.Key]; ok {
			parts[i] = a.Key + "=" + v
			continue
		}
		idx[a.Key] = len(parts)
		parts = append(parts, a.Key+"="+v)
	}
	if len(parts) > 0 {
		parts = append([]string{fmt.Sprintf("|%d", len(parts))}, parts...)
	}
	return strings.Join(append(parts, args...), " ")
}
