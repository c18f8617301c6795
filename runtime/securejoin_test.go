package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("etc")
	mk("usr/lib")
	ln("/etc/real", "etc/passwd")       // absolute: inside root
	ln("../../../../../../etc", "up")   // climbs above root: clamps at root
	ln("usr/lib", "lib")                // relative
	ln("/lib/../../..", "weird")        // ends at root
	ln("loop2", "loop1")                // a loop
	ln("loop1", "loop2")                //
	ln("/nonexistent/deeper", "dangle") // dangling
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		path, want string
	}{
		{"", ""},
		{"/", ""},
		{"/etc/passwd", "/etc/real"},
		{"etc/passwd", "/etc/real"},
		{"/../../etc/passwd", "/etc/real"},
		{"/up/passwd", "/etc/real"},
		{"/lib/x.so", "/usr/lib/x.so"},
		{"/lib/../bin", "/usr/bin"}, // ".." after a link applies to the link's target
		{"/weird/etc", "/etc"},
		{"/dangle/x", "/nonexistent/deeper/x"},
		{"/missing/../etc", "/etc"},
		{"/file/x", "/file/x"},
		{"/a/./b//c/", "/a/b/c"},
	}
	for _, tt := range tests {
		got, err := SecureJoin(root, tt.path)
		if err != nil {
			t.Errorf("SecureJoin(%q): %v", tt.path, err)
			continue
		}
		if want := filepath.Join(root, tt.want); got != want {
			t.Errorf("SecureJoin(%q) = %q, want %q", tt.path, strings.TrimPrefix(got, root), tt.want)
		}
	}
	if _, err := SecureJoin(root, "/loop1/x"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("SecureJoin(loop) = %v, want ELOOP", err)
	}
	if _, err := SecureJoin("", "/x"); err == nil {
		t.Error("SecureJoin with an empty root succeeded")
	}
}
