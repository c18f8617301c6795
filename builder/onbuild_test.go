package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnbuildFromImage: an image's ONBUILD triggers are recorded in its config and run, first,
// in a build that uses it as a base; the child's config has no triggers of its own.
func TestOnbuildFromImage(t *testing.T) {
	parent := t.TempDir()
	df := "FROM busybox:latest\nONBUILD COPY marker.txt /from-child-context.txt\nONBUILD RUN echo ran > /trigger.txt\n"
	if err := os.WriteFile(filepath.Join(parent, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	res, log, err := testBuild(t, Options{ContextDir: parent})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if got := strings.Join(res.Image.Config.Config.OnBuild, "|"); got != "COPY marker.txt /from-child-context.txt|RUN echo ran > /trigger.txt" {
		t.Fatalf("parent OnBuild %q", got)
	}
	if err := testStore.Tag("onbuild-parent:latest", res.Manifest); err != nil {
		t.Fatal(err)
	}
	child := t.TempDir()
	if err := os.WriteFile(filepath.Join(child, "Dockerfile"), []byte("FROM onbuild-parent:latest\nRUN cat /trigger.txt /from-child-context.txt > /both.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(child, "marker.txt"), []byte("child context\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, log, err = testBuild(t, Options{ContextDir: child})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if len(res.Image.Config.Config.OnBuild) != 0 {
		t.Errorf("child OnBuild %q, want none", res.Image.Config.Config.OnBuild)
	}
	if !strings.Contains(log, "ONBUILD RUN echo ran") {
		t.Errorf("progress does not show the trigger:\n%s", log)
	}
	rootfs := exportRootfs(t, res)
	if b, err := os.ReadFile(filepath.Join(rootfs, "both.txt")); err != nil || string(b) != "ran\nchild context\n" {
		t.Errorf("both.txt = %q, %v", b, err)
	}
}
