package runtime

import (
	"context"
	"testing"
	"time"
)

func TestScratchPhases(t *testing.T) {
	root := newTestRoot(t, true)
	id := testID(t)
	const n = 30
	var tCg, tStub, tRun, tTotal time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		cg, err := newCgroup(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := cg.destroy(); err != nil {
			t.Fatal(err)
		}
		tCg += time.Since(t0)
		t0 = time.Now()
		var st stubs
		cfg := initConfig{Root: root, Hostname: "x"}
		dir := t.TempDir()
		if err := prepareMountPoints(&cfg, &st, dir); err != nil {
			t.Fatal(err)
		}
		tStub += time.Since(t0)
		t0 = time.Now()
		cg, _ = newCgroup(id)
		cfg.Args = []string{"/bin/true"}
		if _, err := startAndWait(context.Background(), Spec{}, cfg, cg); err != nil {
			t.Fatal(err)
		}
		tRun += time.Since(t0)
		st.remove()
		t0 = time.Now()
		cg.destroy()
		tCg += time.Since(t0)
		t0 = time.Now()
		if err := Run(context.Background(), Spec{ID: id, Root: root, Args: []string{"/bin/true"}}); err != nil {
			t.Fatal(err)
		}
		tTotal += time.Since(t0)
	}
	t.Logf("cgroup %v stubs %v startAndWait %v total %v", tCg/n, tStub/n, tRun/n, tTotal/n)
}
