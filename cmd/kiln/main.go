// Command kiln builds container images from Dockerfiles, without a daemon.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	kilnrt "kiln/runtime"
)

func main() {
	// A RUN step's sandbox starts as this same binary; it never returns from Reexec.
	if kilnrt.Reexec() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got atomic.Value // the signal that stopped kiln
	go func() {
		for s := range sigs {
			got.CompareAndSwap(nil, s)
			cancel() // every step stops: processes killed, mounts and snapshots removed
		}
	}()
	err := newRootCommand().ExecuteContext(ctx)
	signal.Stop(sigs)
	cancel()
	if err != nil {
		sig, _ := got.Load().(os.Signal)
		if sig != nil {
			fmt.Fprintf(os.Stderr, "ERROR: build stopped by %v\n", sig)
		} else {
			fmt.Fprintf(os.Stderr, "ERROR: %v\n", err)
		}
		os.Exit(exitCode(sig))
	}
}

// exitCode is 128 plus the signal's number for a build stopped by SIGINT (130) or SIGTERM
// (143), as shells report them, and 1 otherwise.
func exitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}
