package fileop

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// tarEntries builds a tar stream from headers; a regular file's content is
// its Linkname field's companion in contents.
func tarBytes(t *testing.T, hdrs []*tar.Header, contents map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(contents[h.Name]))
		}
		if h.ModTime.IsZero() {
			h.ModTime = testMtime
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, contents[h.Name])
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t *testing.T, kind string, dt []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch kind {
	case "plain":
		return dt
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(dt)
		zw.Close()
	case "zstd":
		zw, _ := zstd.NewWriter(&buf)
		zw.Write(dt)
		zw.Close()
	case "bzip2", "xz":
		if _, err := exec.LookPath(kind); err != nil {
			t.Skipf("%s not installed", kind)
		}
		cmd := exec.Command(kind, "-c")
		cmd.Stdin = bytes.NewReader(dt)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return buf.Bytes()
}

func sampleArchive(t *testing.T) []byte {
	return tarBytes(t, []*tar.Header{
		{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000},
		{Name: "dir/f", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 1001},
		{Name: "dir/l", Typeflag: tar.TypeSymlink, Linkname: "f", Uid: 1000, Gid: 1000},
		{Name: "dir/h", Typeflag: tar.TypeLink, Linkname: "dir/f", Mode: 0o640, Uid: 1000, Gid: 1001}, // as tar writers do: the link header repeats the metadata
		{Name: "implied/sub/g", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 2, Gid: 3},
	}, map[string]string{"dir/f": "hello", "implied/sub/g": "g"})
}

func TestExtract(t *testing.T) {
	archive := func(kind string) func(t *testing.T, s *Spec) {
		return func(t *testing.T, s *Spec) {
			if err := os.WriteFile(filepath.Join(s.SrcRoot, "a.bin"), compress(t, kind, sampleArchive(t)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mtime := func(w want) want { w.mtime = true; return w }
	full := []want{
		wDir("app", 0o755),
		mtime(wOwned(wDir("app/dir", 0o750), 1000, 1000)),
		mtime(wOwned(wFile("app/dir/f", "hello", 0o640), 1000, 1001)),
		wOwned(wLink("app/dir/l", "f"), 1000, 1000),
		wOwned(wFile("app/dir/h", "hello", 0o640), 1000, 1001),
		wDir("app/implied", 0o755), wDir("app/implied/sub", 0o755),
		wOwned(wFile("app/implied/sub/g", "g", 0o755|os.ModeSetuid), 2, 3),
		wAbsent("app/a.bin"),
	}
	cases := []copyCase{
		{name: "gzip keeps archive owners", prepare: archive("gzip"), spec: Spec{Sources: []string{"a.bin"}, Dest: "/app", Extract: true, Instruction: "ADD"}, want: full},
		{name: "plain", prepare: archive("plain"), spec: Spec{Sources: []string{"a.bin"}, Dest: "/app/", Extract: true}, want: full},
		{name: "bzip2", prepare: archive("bzip2"), spec: Spec{Sources: []string{"a.bin"}, Dest: "/app", Extract: true}, want: full},
		{name: "xz", prepare: archive("xz"), spec: Spec{Sources: []string{"a.bin"}, Dest: "/app", Extract: true}, want: full},
		{name: "zstd", prepare: archive("zstd"), spec: Spec{Sources: []string{"a.bin"}, Dest: "/app", Extract: true}, want: full},
		{name: "chown overrides archive owners, not implied dirs", prepare: archive("gzip"),
			spec: Spec{Sources: []string{"a.bin"}, Dest: "/app", Extract: true, Chown: &Owner{7, 7}},
			want: []want{wOwned(wDir("app", 0o755), 7, 7), wOwned(wDir("app/dir", 0o750), 7, 7), wOwned(wFile("app/dir/f", "hello", 0o640), 7, 7),
				wOwned(wLink("app/dir/l", "f"), 7, 7), wDir("app/implied", 0o755)}},
		{name: "without Extract an archive is copied", prepare: archive("gzip"), spec: Spec{Sources: []string{"a.bin"}, Dest: "/app/"},
			want: []want{{path: "app/a.bin", kind: 'f', content: string(compress(t, "gzip", sampleArchive(t))), mode: 0o644}}},
		{name: "non-archive copied", src: []node{file("notes.tar.gz", "just text", 0o600)},
			spec: Spec{Sources: []string{"notes.tar.gz"}, Dest: "/app/", Extract: true},
			want: []want{wFile("app/notes.tar.gz", "just text", 0o600)}},
		{name: "empty file copied", src: []node{file("e.tar", "", 0o600)},
			spec: Spec{Sources: []string{"e.tar"}, Dest: "/app/", Extract: true},
			want: []want{wFile("app/e.tar", "", 0o600)}},
		{name: "wildcard of archives and files", src: []node{file("z.txt", "z", 0o644)}, prepare: archive("gzip"),
			spec: Spec{Sources: []string{"*"}, Dest: "/app/", Extract: true},
			want: []want{wOwned(wFile("app/dir/f", "hello", 0o640), 1000, 1001), wFile("app/z.txt", "z", 0o644)}},
		{name: "merges over existing tree", prepare: archive("gzip"), image: []node{file("app/dir/f", "old", 0o777), file("app/dir/keep", "k", 0o600), dir("app/implied", 0o700)},
			spec: Spec{Sources: []string{"a.bin"}, Dest: "/app", Extract: true},
			want: []want{wOwned(wFile("app/dir/f", "hello", 0o640), 1000, 1001), wFile("app/dir/keep", "k", 0o600), wDir("app/implied", 0o700)}},
	}
	runCopyCases(t, cases)
}

// TestExtractSlip feeds hostile archives: every entry must land inside the
// destination directory, as if unpacked chrooted there (BuildKit).
func TestExtractSlip(t *testing.T) {
	slip := tarBytes(t, []*tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "/abs", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "../../../../a/b/c", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "esc", Typeflag: tar.TypeSymlink, Linkname: "/"},
		{Name: "esc/etc/passwd2", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../../.."},
		{Name: "up/x", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "hl", Typeflag: tar.TypeLink, Linkname: "../../../abs", Mode: 0o644},
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o777},
	}, map[string]string{"../evil": "e", "/abs": "a", "../../../../a/b/c": "c", "esc/etc/passwd2": "p", "up/x": "x"})
	cases := []copyCase{
		{name: "slip", image: []node{dir("etc", 0o755)}, prepare: func(t *testing.T, s *Spec) {
			os.WriteFile(filepath.Join(s.SrcRoot, "slip.tar"), slip, 0o644)
		}, spec: Spec{Sources: []string{"slip.tar"}, Dest: "/app", Extract: true},
			want: []want{
				wDir("app", 0o755), // "./" does not change the destination
				wFile("app/evil", "e", 0o644), wFile("app/abs", "a", 0o644), wFile("app/a/b/c", "c", 0o644),
				wLink("app/esc", "/"), wFile("app/etc/passwd2", "p", 0o644), wAbsent("etc/passwd2"),
				wLink("app/up", "../../../.."), wFile("app/x", "x", 0o644), wAbsent("x"),
				wFile("app/hl", "a", 0o644), wAbsent("evil"), wAbsent("abs"),
			}},
		{name: "image symlink dest", image: []node{dir("real", 0o755), symlink("app", "/real")}, prepare: func(t *testing.T, s *Spec) {
			os.WriteFile(filepath.Join(s.SrcRoot, "slip.tar"), slip, 0o644)
		}, spec: Spec{Sources: []string{"slip.tar"}, Dest: "/app", Extract: true},
			want: []want{wFile("real/evil", "e", 0o644), wFile("real/etc/passwd2", "p", 0o644)}},
	}
	runCopyCases(t, cases)

	// Nothing lands beside the roots.
	s, d := roots(t)
	os.WriteFile(filepath.Join(s, "slip.tar"), slip, 0o644)
	if err := Copy(context.Background(), Spec{SrcRoot: s, DestRoot: d, Sources: []string{"slip.tar"}, Dest: "/", Extract: true}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(d)); len(ents) != 2 {
		t.Fatalf("entries beside the roots: %v", ents)
	}
	check(t, d, wFile("evil", "e", 0o644), wFile("etc/passwd2", "p", 0o644), wFile("a/b/c", "c", 0o644))
}
