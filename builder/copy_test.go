package builder

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/exporter"
)

// buildCtx writes a Dockerfile into a fresh context directory and builds it with the shared
// store; it returns the result, the exported root file system, and the build error.
func buildCtx(t *testing.T, dockerfile string) (*Result, string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	res, log, err := testBuild(t, Options{ContextDir: dir})
	if err != nil {
		return nil, log, err
	}
	rootfs := t.TempDir()
	if err := exporter.Export(context.Background(), testStore, testSnaps, res.Manifest, exporter.Output{Type: "local", Dest: rootfs}, nil); err != nil {
		t.Fatalf("export rootfs: %v", err)
	}
	return res, rootfs, nil
}

// wantFile checks one regular file of an exported tree.
func wantFile(t *testing.T, root, p, content string, mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: %v %d:%d, want file %v %d:%d", p, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
	if content != "" {
		if dt, _ := os.ReadFile(filepath.Join(root, p)); string(dt) != content {
			t.Errorf("%s: content %q, want %q", p, dt, content)
		}
	}
}

// fileServer serves named files with a Last-Modified time; content can change between builds.
type fileServer struct {
	mu    sync.Mutex
	files map[string]string
	mtime time.Time
	hits  int
}

func (f *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits++
	body, ok := f.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Last-Modified", f.mtime.UTC().Format(http.TimeFormat))
	// Content-Disposition is ignored: the Dockerfile frontend names the file after the URL.
	w.Header().Set("Content-Disposition", `attachment; filename="other-name.bin"`)
	fmt.Fprint(w, body)
}

func (f *fileServer) set(p, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[p] = body
}

func TestAddURL(t *testing.T) {
	archive, err := os.ReadFile("../testdata/cases/add-archives/a.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fileServer{files: map[string]string{
		"/files/app.tar.gz": string(archive),
		"/files/script.sh":  "#!/bin/sh\necho tool\n",
		"/":                 "index\n",
	}, mtime: time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	u := srv.URL
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("#!/bin/sh\necho tool\n")))
	df := fmt.Sprintf(`FROM busybox:latest
ADD --chmod=0755 --chown=app %[1]s/files/script.sh /usr/local/bin/tool
ADD --checksum=%[2]s %[1]s/files/script.sh /checked
ADD %[1]s/ /root-url/
ADD %[1]s/files/app.tar.gz /dl/
ADD --unpack=true %[1]s/files/app.tar.gz /unpacked/
`, u, sum)
	res, root, err := buildCtx(t, df)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, root)
	}
	wantFile(t, root, "dl/app.tar.gz", string(archive), 0o600, 0, 0)
	if fi, err := os.Stat(filepath.Join(root, "dl/app.tar.gz")); err == nil && !fi.ModTime().Equal(fs.mtime) {
		t.Errorf("dl/app.tar.gz: mtime %v, want Last-Modified %v", fi.ModTime(), fs.mtime)
	}
	wantFile(t, root, "usr/local/bin/tool", "#!/bin/sh\necho tool\n", 0o755, 1000, 1000)
	wantFile(t, root, "checked", "#!/bin/sh\necho tool\n", 0o600, 0, 0)
	wantFile(t, root, "root-url/__unnamed__", "index\n", 0o600, 0, 0)
	wantFile(t, root, "unpacked/inner/file.txt", "tar\n", 0o640, 7, 8)
	if res.Steps != 5 || res.Cached != 0 {
		t.Errorf("first build: %d steps, %d cached", res.Steps, res.Cached)
	}

	// Unchanged downloads hit the cache (the URL is fetched again to learn its digest).
	hits := fs.hits
	res, _, err = buildCtx(t, df)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cached != 5 || fs.hits == hits {
		t.Errorf("second build: %d of %d cached, %d requests", res.Cached, res.Steps, fs.hits-hits)
	}

	// New content behind the same URL is a new step; a non-archive is copied even with --unpack.
	fs.set("/files/app.tar.gz", "changed\n")
	res, root, err = buildCtx(t, df)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cached != 3 {
		t.Errorf("after a change: %d of %d cached, want 3", res.Cached, res.Steps)
	}
	wantFile(t, root, "dl/app.tar.gz", "changed\n", 0o600, 0, 0)
	wantFile(t, root, "unpacked/app.tar.gz", "changed\n", 0o600, 0, 0)

	for _, tc := range []struct{ name, line, want string }{
		{"wrong checksum", "ADD --checksum=sha256:" + strings.Repeat("0", 64) + " " + u + "/files/script.sh /x", "checksum mismatch"},
		{"missing", "ADD " + u + "/files/missing.txt /x", "invalid response status 404"},
		{"bad checksum", "ADD --checksum=nope " + u + "/files/script.sh /x", "invalid checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := buildCtx(t, "FROM busybox:latest\n"+tc.line+"\n")
			if err == nil || !strings.Contains(err.Error(), "Dockerfile:2:") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want Dockerfile:2: and %q", err, tc.want)
			}
		})
	}
}

// gitRepo makes a repository under dir/repo.git's parent served by git http-backend, and returns
// a function running git in its work tree.
func gitRepo(t *testing.T) (url string, git func(args ...string) string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	base := t.TempDir()
	work := filepath.Join(base, "repo.git")
	git = func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+base,
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, d := range []string{"sub/dir"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"README": "v1\n", "sub/dir/file.txt": "in sub\n", "script.sh": "#!/bin/sh\n"}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(work, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(work, "script.sh"), 0o755)
	os.Symlink("README", filepath.Join(work, "link"))
	git("-c", "init.defaultBranch=main", "init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "one")
	git("tag", "-a", "v1", "-m", "version 1")
	srv := httptest.NewServer(&cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + base, "GIT_HTTP_EXPORT_ALL=1"},
	})
	t.Cleanup(srv.Close)
	return srv.URL + "/repo.git", git
}

func TestAddGit(t *testing.T) {
	u, git := gitRepo(t)
	v1 := git("rev-parse", "HEAD")
	df := fmt.Sprintf(`FROM busybox:latest
ADD %[1]s#v1 /v1
ADD --keep-git-dir=true %[1]s#v1 /withgit
ADD --checksum=%[2]s %[1]s#v1 /checked
ADD --chown=app %[1]s?ref=v1&subdir=sub /query
ADD %[1]s /src
ADD %[1]s#main:sub/dir /subdir/
`, u, v1[:12])
	res, root, err := buildCtx(t, df)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, root)
	}
	wantFile(t, root, "src/README", "v1\n", 0o644, 0, 0)
	wantFile(t, root, "src/script.sh", "#!/bin/sh\n", 0o755, 0, 0)
	if l, err := os.Readlink(filepath.Join(root, "src/link")); err != nil || l != "README" {
		t.Errorf("src/link: %q %v", l, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "src/.git")); err == nil {
		t.Error("src/.git kept without --keep-git-dir")
	}
	wantFile(t, root, "v1/README", "v1\n", 0o644, 0, 0)
	wantFile(t, root, "subdir/file.txt", "in sub\n", 0o644, 0, 0)
	if fi, err := os.Stat(filepath.Join(root, "withgit/.git")); err != nil || !fi.IsDir() {
		t.Errorf("withgit/.git: %v", err)
	}
	wantFile(t, root, "checked/README", "v1\n", 0o644, 0, 0)
	wantFile(t, root, "query/dir/file.txt", "in sub\n", 0o644, 1000, 1000)
	if res.Cached != 0 {
		t.Errorf("first build: %d cached", res.Cached)
	}

	// A new commit on the default branch changes only the steps that follow it.
	work := repoWorkTree(t, git)
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "two")
	res, root, err = buildCtx(t, df)
	if err != nil {
		t.Fatal(err)
	}
	wantFile(t, root, "src/README", "v2\n", 0o644, 0, 0)
	wantFile(t, root, "v1/README", "v1\n", 0o644, 0, 0)
	if res.Cached != 4 {
		t.Errorf("after a commit: %d of %d cached, want 4 (/src and /subdir re-run)", res.Cached, res.Steps)
	}

	for _, tc := range []struct{ name, line, want string }{
		{"wrong checksum", "ADD --checksum=deadbeef " + u + "#v1 /x", "expected checksum to match"},
		{"missing ref", "ADD " + u + "#nope /x", "does not contain ref nope"},
		{"missing subdir", "ADD " + u + "#main:nosuch /x", "invalid subdir"},
		{"copy", "COPY " + u + " /x", "source can't be a git ref for COPY"},
		{"bad query", "ADD " + u + "?foo=bar /x", `unexpected query "foo"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := buildCtx(t, "FROM busybox:latest\n"+tc.line+"\n")
			if err == nil || !strings.Contains(err.Error(), "Dockerfile:2:") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want Dockerfile:2: and %q", err, tc.want)
			}
		})
	}
}

func repoWorkTree(t *testing.T, git func(args ...string) string) string {
	t.Helper()
	return git("rev-parse", "--show-toplevel")
}

// TestCopyLinkIndependent checks what --link is for: the copy's layer does not depend on the
// stage below it, so the same COPY --link on another base is the same layer, from the cache.
func TestCopyLinkIndependent(t *testing.T) {
	dir := t.TempDir()
	nonce := testNonce() // the suite may run again over the same store (-count=N)
	os.WriteFile(filepath.Join(dir, "f.txt"), []byte("linked "+nonce+"\n"), 0o644)
	build := func(df string) *Result {
		t.Helper()
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644)
		res, log, err := testBuild(t, Options{ContextDir: dir})
		if err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
		return res
	}
	a := build("FROM busybox:latest\nCOPY --link f.txt /opt/dir/\n")
	b := build("FROM busybox:latest\nRUN mkdir -p /opt/dir && echo other > /opt/dir/o.txt # " + nonce + "\nCOPY --link f.txt /opt/dir/\n")
	la, lb := a.Image.Layers[len(a.Image.Layers)-1], b.Image.Layers[len(b.Image.Layers)-1]
	if la.DiffID != lb.DiffID || b.Cached != 1 {
		t.Errorf("linked layers %s and %s (second build: %d of %d cached)", la.DiffID, lb.DiffID, b.Cached, b.Steps)
	}
	rootfs := t.TempDir()
	if err := exporter.Export(context.Background(), testStore, testSnaps, b.Manifest, exporter.Output{Type: "local", Dest: rootfs}, nil); err != nil {
		t.Fatal(err)
	}
	wantFile(t, rootfs, "opt/dir/f.txt", "linked "+nonce+"\n", 0o644, 0, 0)
	wantFile(t, rootfs, "opt/dir/o.txt", "other\n", 0o644, 0, 0)
}
