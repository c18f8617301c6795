package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"kiln/builder"
	kilnrt "kiln/runtime"

	"github.com/spf13/cobra"
)

// run is a convenience for trying what was built: it runs an image's command once, in the same
// sandbox RUN steps use, over a throwaway snapshot.
func newRunCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run IMAGE [COMMAND [ARG...]]",
		Short: "Run a command in a new throwaway container of an image",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, snaps, err := g.open()
			if err != nil {
				return err
			}
			defer store.Close()
			img, _, err := loadStored(ctx, store, args[0])
			if err != nil {
				return err
			}
			cfg := img.Config.Config
			argv := append([]string{}, cfg.Entrypoint...)
			if len(args) > 1 {
				argv = append(argv, args[1:]...)
			} else {
				argv = append(argv, cfg.Cmd...)
			}
			if len(argv) == 0 {
				return fmt.Errorf("image %s has no command: give one", args[0])
			}
			chain, err := builder.Materialize(ctx, store, snaps, img.Layers)
			if err != nil {
				return err
			}
			active, err := snaps.Prepare(ctx, chain)
			if err != nil {
				return err
			}
			defer snaps.Abort(context.WithoutCancel(ctx), active)
			err = kilnrt.Run(ctx, kilnrt.Spec{
				ID: fmt.Sprintf("run-%d", os.Getpid()), Root: active.Root, Args: argv, Env: cfg.Env,
				Cwd: cfg.WorkingDir, User: cfg.User, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			})
			var exit *kilnrt.ExitError
			if errors.As(err, &exit) {
				_ = snaps.Abort(context.WithoutCancel(ctx), active)
				os.Exit(exit.Code)
			}
			if err != nil {
				return fmt.Errorf("run %s: %w", strings.Join(argv, " "), err)
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}
