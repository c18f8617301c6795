package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if Reexec() {
		return
	}
	if os.Getenv(helperEnv) != "" {
		os.Exit(stepHelper())
	}
	os.Exit(m.Run())
}

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"app:x:1000:1000:app:/home/app:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	testGroup = "root:x:0:\n" +
		"wheel:x:10:root,app\n" +
		"app:x:1000:\n" +
		"nogroup:x:65534:\n"
)

// busyboxPath finds a static busybox on the host.
func busyboxPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no busybox: apt-get install -y busybox-static")
	return ""
}

// newTestRoot makes a root file system: /bin with a static busybox and its applets, and, when
// withEtc, /etc/passwd and /etc/group with root, app (1000) and nobody (65534).
func newTestRoot(t testing.TB, withEtc bool) string {
	t.Helper()
	bb := busyboxPath(t)
	root := t.TempDir()
	// The sandbox's "/" must be searchable by non-root users.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), src, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, name := range strings.Fields(string(list)) {
		if name == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	if withEtc {
		writeFile(t, filepath.Join(root, "etc/passwd"), testPasswd)
		writeFile(t, filepath.Join(root, "etc/group"), testGroup)
	}
	return root
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testID returns a step id unique to this test run.
func testID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "test-" + hex.EncodeToString(b)
}

// runShell runs a busybox shell script in root and returns its combined output.
func runShell(t testing.TB, root, script string, edit ...func(*Spec)) (string, error) {
	t.Helper()
	var out bytes.Buffer
	spec := Spec{
		ID:     testID(t),
		Root:   root,
		Args:   []string{"/bin/sh", "-c", script},
		Stdout: &out,
		Stderr: &out,
	}
	for _, e := range edit {
		e(&spec)
	}
	err := Run(context.Background(), spec)
	return out.String(), err
}
