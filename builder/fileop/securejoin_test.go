package fileop

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root,
		dir("etc", 0o755), file("etc/passwd", "p", 0o644),
		symlink("abs", "/etc"), symlink("rel", "etc"), symlink("up", "../../../.."),
		symlink("chain", "abs/passwd"), symlink("loop1", "loop2"), symlink("loop2", "loop1"),
		dir("a/b", 0o755), symlink("a/b/parent", ".."),
	)
	cases := []struct {
		p, want string
		err     error
	}{
		{p: "/", want: ""},
		{p: "", want: ""},
		{p: "../../etc/passwd", want: "etc/passwd"},
		{p: "/abs/passwd", want: "etc/passwd"},
		{p: "rel/../abs", want: "etc"},
		{p: "up/etc", want: "etc"},
		{p: "up", want: ""},
		{p: "chain", want: "etc/passwd"},
		{p: "missing/../x/y", want: "x/y"},
		{p: "a/b/parent/b/parent", want: "a"},
		{p: "etc/passwd/x", want: "etc/passwd/x"},
		{p: "loop1", err: ErrTooManyLinks},
	}
	for _, tc := range cases {
		got, err := SecureJoin(root, tc.p)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("SecureJoin(%q) error %v, want %v", tc.p, err, tc.err)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("SecureJoin(%q) = %q, %v; want %q", tc.p, got, err, filepath.Join(root, tc.want))
		}
	}
	// secureJoinParent leaves the last component alone.
	if got, _ := secureJoinParent(root, "/abs/../abs"); got != filepath.Join(root, "abs") {
		t.Errorf("secureJoinParent = %q", got)
	}
}
