// Command kiln builds container images from Dockerfiles, without a daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	kilnrt "kiln/runtime"
)

func main() {
	// A RUN step's sandbox starts as this same binary; it never returns from Reexec.
	if kilnrt.Reexec() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ERROR: %v\n", err)
		os.Exit(exitCode(err, interrupted))
	}
}

// exitCode is 130 for a build stopped by SIGINT or SIGTERM, as shells report them, and 1 otherwise.
func exitCode(err error, interrupted bool) int {
	if interrupted || errors.Is(err, context.Canceled) {
		return 130
	}
	return 1
}
