package fileop

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// copyCase is one COPY/ADD run: a source tree, an image tree, the spec, and
// the expected error or resulting image tree.
type copyCase struct {
	name    string
	src     []node
	image   []node
	spec    Spec // SrcRoot and DestRoot are filled in
	wantErr string
	errIs   error
	want    []want
	// prepare, when set, adjusts the spec once the trees exist.
	prepare func(t *testing.T, s *Spec)
}

func runCopyCases(t *testing.T, cases []copyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := roots(t)
			mkTree(t, src, tc.src...)
			mkTree(t, dst, tc.image...)
			s := tc.spec
			s.SrcRoot, s.DestRoot = src, dst
			if tc.prepare != nil {
				tc.prepare(t, &s)
			}
			err := Copy(context.Background(), s)
			if tc.wantErr != "" || tc.errIs != nil {
				if err == nil {
					t.Fatalf("Copy: no error, want %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Copy: error %q, want it to contain %q", err, tc.wantErr)
				}
				if tc.errIs != nil && !errors.Is(err, tc.errIs) {
					t.Fatalf("Copy: error %v is not %v", err, tc.errIs)
				}
			} else if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			check(t, dst, tc.want...)
		})
	}
}

// TestCopySources covers how sources are found and where they land.
func TestCopySources(t *testing.T) {
	tree := []node{
		file("foo.go", "foo", 0o644),
		file("bar.go", "bar", 0o600),
		dir("sub", 0o700),
		dir("sub/dir1", 0o700),
		dir("sub/dir1/dir2", 0o700),
		file("sub/dir1/dir2/foo", "deep", 0o600),
		symlink("linkfile", "foo.go"),
		symlink("linkdir", "sub/dir1"),
		symlink("abslink", "/foo.go"),      // absolute: resolved inside the context
		symlink("outside", "../../../etc"), // clamped at the context root
	}
	cases := []copyCase{
		{name: "file into dir/", src: tree, spec: Spec{Sources: []string{"foo.go"}, Dest: "/app/"},
			want: []want{wFile("app/foo.go", "foo", 0o644), wDir("app", 0o755)}},
		{name: "file to new name", src: tree, spec: Spec{Sources: []string{"foo.go"}, Dest: "/app/renamed"},
			want: []want{wFile("app/renamed", "foo", 0o644), wAbsent("app/foo.go")}},
		{name: "file into existing dir without slash", src: tree, image: []node{dir("app", 0o750)},
			spec: Spec{Sources: []string{"foo.go"}, Dest: "/app"},
			want: []want{wFile("app/foo.go", "foo", 0o644), wDir("app", 0o750)}},
		{name: "dir copies contents", src: tree, spec: Spec{Sources: []string{"sub"}, Dest: "/x"},
			want: []want{wDir("x", 0o755), wDir("x/dir1", 0o700), wFile("x/dir1/dir2/foo", "deep", 0o600), wAbsent("x/sub")}},
		{name: "dir trailing slash and dot", src: tree, spec: Spec{Sources: []string{"sub/dir1/.", "sub/dir1/"}, Dest: "/y/"},
			want: []want{wFile("y/dir2/foo", "deep", 0o600)}},
		{name: "context root", src: tree, spec: Spec{Sources: []string{"."}, Dest: "all/", Workdir: "/w"},
			want: []want{wFile("w/all/foo.go", "foo", 0o644), wLink("w/all/linkfile", "foo.go"), wLink("w/all/outside", "../../../etc")}},
		{name: "dotdot clamped at root", src: tree, spec: Spec{Sources: []string{"../../foo.go"}, Dest: "/"},
			want: []want{wFile("foo.go", "foo", 0o644)}},
		{name: "symlink source followed, keeps its name", src: tree, spec: Spec{Sources: []string{"linkfile"}, Dest: "/d/"},
			want: []want{wFile("d/linkfile", "foo", 0o644)}},
		{name: "symlink to dir followed", src: tree, spec: Spec{Sources: []string{"linkdir"}, Dest: "/d"},
			want: []want{wFile("d/dir2/foo", "deep", 0o600)}},
		{name: "absolute symlink resolved in context", src: tree, spec: Spec{Sources: []string{"abslink"}, Dest: "/d/"},
			want: []want{wFile("d/abslink", "foo", 0o644)}},
		{name: "escaping symlink stays in context", src: tree, spec: Spec{Sources: []string{"outside/passwd"}, Dest: "/d/"},
			wantErr: `COPY failed: "/outside/passwd": not found`, errIs: ErrNotFound},
		{name: "missing source", src: tree, spec: Spec{Sources: []string{"foo.go", "nope"}, Dest: "/d/"},
			wantErr: `COPY failed: "/nope": not found`, errIs: ErrNotFound},
		{name: "missing source ADD", src: tree, spec: Spec{Sources: []string{"./nope/x"}, Dest: "/d/", Instruction: "ADD"},
			wantErr: `ADD failed: "/nope/x": not found`},
		{name: "wildcard", src: tree, spec: Spec{Sources: []string{"*.go"}, Dest: "/gofiles/"},
			want: []want{wFile("gofiles/foo.go", "foo", 0o644), wFile("gofiles/bar.go", "bar", 0o600)}},
		{name: "wildcard single match renames", src: tree, spec: Spec{Sources: []string{"f*.go"}, Dest: "foo2.go"},
			want: []want{wFile("foo2.go", "foo", 0o644)}},
		{name: "wildcard dirs copy contents", src: tree, spec: Spec{Sources: []string{"sub/*"}, Dest: "/subdest/"},
			want: []want{wFile("subdest/dir2/foo", "deep", 0o600)}},
		{name: "wildcard in middle", src: tree, spec: Spec{Sources: []string{"sub/*/dir2/foo"}, Dest: "/subdest3/bar"},
			want: []want{wFile("subdest3/bar", "deep", 0o600)}},
		{name: "empty wildcard with another source", src: tree, spec: Spec{Sources: []string{"foo.go", "nomatch*"}, Dest: "/"},
			want: []want{wFile("foo.go", "foo", 0o644)}},
		{name: "empty wildcard alone is not an error (BuildKit)", src: tree, spec: Spec{Sources: []string{"nomatch*"}, Dest: "/e/"},
			want: []want{wAbsent("e")}},
		{name: "several sources need a dir", src: tree, spec: Spec{Sources: []string{"foo.go", "bar.go"}, Dest: "/d"},
			wantErr: "When using COPY with more than one source file, the destination must be a directory and end with a /", errIs: ErrNotDirectory},
		{name: "wildcard with several matches needs a dir", src: tree, spec: Spec{Sources: []string{"*.go"}, Dest: "/d"},
			errIs: ErrNotDirectory},
		{name: "several sources into existing dir", src: tree, image: []node{dir("d", 0o755)}, spec: Spec{Sources: []string{"foo.go", "bar.go"}, Dest: "/d"},
			want: []want{wFile("d/foo.go", "foo", 0o644), wFile("d/bar.go", "bar", 0o600)}},
		{name: "url COPY", src: tree, spec: Spec{Sources: []string{"https://example.com/x"}, Dest: "/"},
			wantErr: "source can't be a URL for COPY", errIs: ErrURLNotSupported},
		{name: "url ADD", src: tree, spec: Spec{Sources: []string{"http://example.com/x"}, Dest: "/", Instruction: "ADD"},
			errIs: ErrURLNotSupported},
		{name: "relative dest against workdir", src: tree, spec: Spec{Sources: []string{"foo.go"}, Dest: "./bar/baz", Workdir: "/test1/test2"},
			want: []want{wFile("test1/test2/bar/baz", "foo", 0o644), wDir("test1", 0o755)}},
		{name: "dest dot is workdir", src: tree, spec: Spec{Sources: []string{"foo.go"}, Dest: ".", Workdir: "/w"},
			want: []want{wFile("w/foo.go", "foo", 0o644)}},
		{name: "dest dotdot from workdir", src: tree, spec: Spec{Sources: []string{"foo.go"}, Dest: "../", Workdir: "/test5/test6"},
			want: []want{wFile("test5/foo.go", "foo", 0o644)}},
	}
	runCopyCases(t, cases)
}

// TestCopyDestSecure covers the destination join: symlinks in the image are
// followed as if chrooted at DestRoot, and missing parents are created.
func TestCopyDestSecure(t *testing.T) {
	src := []node{file("f", "data", 0o644), dir("d", 0o755), file("d/g", "g", 0o644)}
	cases := []copyCase{
		{name: "absolute link in image", src: src, image: []node{dir("etc", 0o755), symlink("app", "/etc")},
			spec: Spec{Sources: []string{"f"}, Dest: "/app/"},
			want: []want{wFile("etc/f", "data", 0o644), wLink("app", "/etc")}},
		{name: "escaping relative link in image", src: src, image: []node{symlink("app", "../../../../..")},
			spec: Spec{Sources: []string{"f"}, Dest: "/app/x"},
			want: []want{wFile("x", "data", 0o644)}},
		{name: "link as last component is followed", src: src, image: []node{dir("real", 0o700), symlink("app", "/real")},
			spec: Spec{Sources: []string{"d"}, Dest: "/app"},
			want: []want{wFile("real/g", "g", 0o644), wDir("real", 0o700), wLink("app", "/real")}},
		{name: "dangling link as file dest", src: src, image: []node{symlink("app", "/nowhere/target")},
			spec: Spec{Sources: []string{"f"}, Dest: "/app"},
			want: []want{wFile("nowhere/target", "data", 0o644), wDir("nowhere", 0o755), wLink("app", "/nowhere/target")}},
		{name: "parents created 0755 root owned", src: src, spec: Spec{Sources: []string{"f"}, Dest: "/a/b/c"},
			want: []want{wDir("a", 0o755), wDir("a/b", 0o755), wFile("a/b/c", "data", 0o644)}},
		{name: "parents created with chown owner", src: src, spec: Spec{Sources: []string{"f"}, Dest: "/a/b/", Chown: &Owner{1000, 1001}},
			want: []want{wOwned(wDir("a", 0o755), 1000, 1001), wOwned(wDir("a/b", 0o755), 1000, 1001), wOwned(wFile("a/b/f", "data", 0o644), 1000, 1001)}},
		{name: "existing parents untouched", src: src, image: []node{owned(dir("a", 0o700), 5, 5)}, spec: Spec{Sources: []string{"f"}, Dest: "/a/b/", Chown: &Owner{1000, 1000}},
			want: []want{wOwned(wDir("a", 0o700), 5, 5), wOwned(wDir("a/b", 0o755), 1000, 1000)}},
	}
	runCopyCases(t, cases)

	// No case may write outside DestRoot: the test roots' parent holds only
	// src and dst.
	t.Run("nothing outside root", func(t *testing.T) {
		s, d := roots(t)
		mkTree(t, s, src...)
		mkTree(t, d, symlink("app", "../"), symlink("abs", "/.."))
		for _, dest := range []string{"/app/x", "/abs/y", "../../z", "/app/../../w/"} {
			if err := Copy(context.Background(), Spec{SrcRoot: s, DestRoot: d, Sources: []string{"f"}, Dest: dest}); err != nil {
				t.Fatalf("%s: %v", dest, err)
			}
		}
		ents, _ := os.ReadDir(filepath.Dir(d))
		if len(ents) != 2 {
			t.Fatalf("entries beside the roots: %v", ents)
		}
		check(t, d, wFile("x", "data", 0o644), wFile("y", "data", 0o644), wFile("z", "data", 0o644), wFile("w/f", "data", 0o644))
	})
}

// TestCopyMetadata covers modes, times, links, owners and xattrs.
func TestCopyMetadata(t *testing.T) {
	src := []node{
		owned(file("f", "x", 0o755|os.ModeSetuid), 1000, 1000),
		owned(dir("d", 0o751), 1000, 1000),
		owned(file("d/a", "a", 0o640), 1000, 1000),
		owned(symlink("d/rel", "../f"), 1000, 1000),
		owned(symlink("d/abs", "/etc/passwd"), 1000, 1000),
		hardlink("d/a2", "d/a"),
		dir("d/sub", 0o700),
		file("d/sub/s", "s", 0o444),
	}
	mtime := func(w want) want { w.mtime = true; return w }
	cases := []copyCase{
		{name: "modes mtimes links owners 0:0", src: src, spec: Spec{Sources: []string{"f", "d"}, Dest: "/out/"},
			want: []want{
				mtime(wFile("out/f", "x", 0o755|os.ModeSetuid)),
				mtime(wFile("out/a", "a", 0o640)), wFile("out/a2", "a", 0o640),
				wLink("out/rel", "../f"), wLink("out/abs", "/etc/passwd"),
				mtime(wDir("out/sub", 0o700)), mtime(wFile("out/sub/s", "s", 0o444)),
				mtime(wDir("out", 0o755)), // the top dir merges: its mode is the created one, its times the source's
			}},
		{name: "chown applies to all", src: src, spec: Spec{Sources: []string{"d"}, Dest: "/out", Chown: &Owner{7, 8}},
			want: []want{wOwned(wDir("out", 0o755), 7, 8), wOwned(wFile("out/a", "a", 0o640), 7, 8), wOwned(wLink("out/rel", "../f"), 7, 8), wOwned(wDir("out/sub", 0o700), 7, 8)}},
		{name: "chmod applies to files and dirs", src: src, spec: Spec{Sources: []string{"d"}, Dest: "/a/out", Chmod: ptr(os.FileMode(0o640))},
			want: []want{wFile("out/../a/out/a", "a", 0o640), wDir("a/out/sub", 0o640), wFile("a/out/sub/s", "s", 0o640), wDir("a", 0o640), wLink("a/out/rel", "../f")}},
		{name: "chmod raw setuid bits", src: src, spec: Spec{Sources: []string{"f"}, Dest: "/g", Chmod: ptr(os.FileMode(0o4711))},
			want: []want{wFile("g", "x", 0o711|os.ModeSetuid)}},
		{name: "keep owners for stage copies", src: src, spec: Spec{Sources: []string{"d"}, Dest: "/out/", KeepOwners: true},
			want: []want{wOwned(wFile("out/a", "a", 0o640), 1000, 1000), wOwned(wLink("out/rel", "../f"), 1000, 1000), wFile("out/sub/s", "s", 0o444), wDir("out", 0o755)}},
	}
	runCopyCases(t, cases)

	t.Run("hardlinks kept within a source", func(t *testing.T) {
		s, d := roots(t)
		mkTree(t, s, src...)
		if err := Copy(context.Background(), Spec{SrcRoot: s, DestRoot: d, Sources: []string{"d"}, Dest: "/o"}); err != nil {
			t.Fatal(err)
		}
		a, _ := os.Lstat(filepath.Join(d, "o/a"))
		a2, _ := os.Lstat(filepath.Join(d, "o/a2"))
		if !os.SameFile(a, a2) {
			t.Fatal("o/a and o/a2 are not one inode")
		}
	})

	t.Run("xattrs copied", func(t *testing.T) {
		s, d := roots(t)
		mkTree(t, s, file("x", "x", 0o644))
		if err := unix.Lsetxattr(filepath.Join(s, "x"), "user.kiln", []byte("v"), 0); err != nil {
			t.Skipf("no user xattrs here: %v", err)
		}
		if err := Copy(context.Background(), Spec{SrcRoot: s, DestRoot: d, Sources: []string{"x"}, Dest: "/"}); err != nil {
			t.Fatal(err)
		}
		v, err := getXattr(filepath.Join(d, "x"), "user.kiln")
		if err != nil || string(v) != "v" {
			t.Fatalf("xattr = %q, %v", v, err)
		}
	})

	t.Run("fifo", func(t *testing.T) {
		s, d := roots(t)
		if err := unix.Mkfifo(filepath.Join(s, "p"), 0o620); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(s, "p"), 0o620); err != nil { // umask
			t.Fatal(err)
		}
		if err := Copy(context.Background(), Spec{SrcRoot: s, DestRoot: d, Sources: []string{"."}, Dest: "/"}); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(d, "p"))
		if err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o620 {
			t.Fatalf("p: %v %v", fi, err)
		}
	})
}

// TestCopyOverwrite covers copying onto what the image already has.
func TestCopyOverwrite(t *testing.T) {
	src := []node{file("f", "new", 0o644), dir("d", 0o755), file("d/n", "n", 0o600), dir("d/sub", 0o700), file("d/sub/x", "x", 0o644)}
	cases := []copyCase{
		{name: "file replaces file", src: src, image: []node{owned(file("f", "old", 0o777), 3, 3)}, spec: Spec{Sources: []string{"f"}, Dest: "/f"},
			want: []want{wFile("f", "new", 0o644)}},
		{name: "file replaces symlink in dir", src: src, image: []node{dir("o", 0o755), symlink("o/f", "/etc/passwd")}, spec: Spec{Sources: []string{"f"}, Dest: "/o/"},
			want: []want{wFile("o/f", "new", 0o644)}},
		{name: "dir merges into dir", src: src, image: []node{owned(dir("o", 0o711), 5, 5), file("o/keep", "k", 0o600), owned(dir("o/sub", 0o777), 5, 5), file("o/sub/old", "o", 0o600)},
			spec: Spec{Sources: []string{"d"}, Dest: "/o"},
			want: []want{wOwned(wDir("o", 0o711), 5, 5), wFile("o/keep", "k", 0o600), wFile("o/n", "n", 0o600), wDir("o/sub", 0o700), wFile("o/sub/old", "o", 0o600), wFile("o/sub/x", "x", 0o644)}},
		{name: "nested existing dir takes source metadata", src: src, image: []node{dir("o/sub", 0o755), file("o/sub/q", "q", 0o644)}, spec: Spec{Sources: []string{"d"}, Dest: "/o"},
			want: []want{wDir("o/sub", 0o700)}},
		{name: "dir over file fails", src: []node{dir("d/n", 0o755)}, image: []node{file("o/n", "f", 0o644)}, spec: Spec{Sources: []string{"d"}, Dest: "/o"},
			wantErr: "cannot copy to non-directory"},
		{name: "file over dir entry fails", src: src, image: []node{dir("o/n", 0o755)}, spec: Spec{Sources: []string{"d"}, Dest: "/o"},
			wantErr: "cannot replace directory"},
	}
	runCopyCases(t, cases)
}

func ptr[T any](v T) *T { return &v }

// TestCopyCancel checks that a cancelled context stops a copy.
func TestCopyCancel(t *testing.T) {
	s, d := roots(t)
	for i := range 50 {
		mkTree(t, s, file(filepath.Join("d", string(rune('a'+i%26))+strings.Repeat("x", i)), "x", 0o644))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, f := range []func() error{
		func() error { return Copy(ctx, Spec{SrcRoot: s, DestRoot: d, Sources: []string{"d"}, Dest: "/"}) },
		func() error {
			_, err := Checksum(ctx, Spec{SrcRoot: s, Sources: []string{"d"}})
			return err
		},
	} {
		if err := f(); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	}
}
