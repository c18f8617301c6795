package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"kiln/cache"
	kilnrt "kiln/runtime"
	"kiln/snapshot"
)

// The tests share one state directory, with the busybox base image built into it once (from
// the host's busybox-static, by kiln itself), as "busybox:latest" and
// "127.0.0.1:5000/busybox:latest".
var (
	testStore *cache.Store
	testSnaps snapshot.Snapshotter
)

func TestMain(m *testing.M) {
	if kilnrt.Reexec() {
		return
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := os.MkdirTemp("/var/tmp", "kiln-builder-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(root)
	if err := setupStore(root); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	return m.Run()
}

func setupStore(root string) error {
	var err error
	if testStore, err = cache.Open(filepath.Join(root, "state")); err != nil {
		return err
	}
	kind := os.Getenv("KILN_SNAPSHOTTER")
	if testSnaps, err = snapshot.New(testStore.SnapshotsDir(), kind); err != nil {
		return err
	}
	ctxDir := filepath.Join(root, "busybox-context")
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "busybox-context.sh")
	if out, err := exec.Command(script, ctxDir).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", script, err, out)
	}
	b := &Builder{Store: testStore, Snaps: testSnaps}
	res, err := b.Build(context.Background(), Options{ContextDir: ctxDir, Progress: io.Discard})
	if err != nil {
		return fmt.Errorf("build busybox base: %w", err)
	}
	// The cases name the base as the team's reference registry does, so that the same Dockerfiles
	// build unchanged with BuildKit for comparison; kiln finds the name in its store first.
	for _, name := range []string{"busybox:latest", "127.0.0.1:5000/busybox:latest"} {
		if err := testStore.Tag(name, res.Manifest); err != nil {
			return err
		}
	}
	return nil
}

// testBuild builds a context directory with the shared store.
func testBuild(t *testing.T, opts Options) (*Result, string, error) {
	t.Helper()
	var log logWriter
	opts.Progress = &log
	b := &Builder{Store: testStore, Snaps: testSnaps}
	res, err := b.Build(context.Background(), opts)
	return res, log.String(), err
}

type logWriter struct{ b []byte }

func (l *logWriter) Write(p []byte) (int, error) { l.b = append(l.b, p...); return len(p), nil }
func (l *logWriter) String() string              { return string(l.b) }

// testNonce is unique to each call: a test that needs its steps to run, not to come from a
// record an earlier run of the suite (go test -count=N) left in the shared store, puts it in them.
func testNonce() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }
