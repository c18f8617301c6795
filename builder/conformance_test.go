package builder

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"kiln/exporter"
)

// TestCases builds every case in testdata/cases and checks its expectations. A case is a folder:
// its Dockerfile, its context (the folder itself), and a file `expect` of lines:
//
//	/path file 0644 0:0 "content"     a regular file (content optional, Go-quoted)
//	/path dir 0755 1000:1000          a directory
//	/path symlink -> target           a symbolic link
//	/path hardlink /other             the same inode as /other
//	/path fifo 0644 0:0               a named pipe
//	!/path                            absent
//	config Key JSON                   a field of the image config, e.g. config User "app"
//	layers N                          the number of layers the image has
//	history N                         the number of history entries
//	arg K=V                           a --build-arg
//	target NAME                       --target
//	secret id=ID,src=FILE             a --secret (src relative to the case folder)
//	fails LINE substring              the build fails at Dockerfile line LINE with a message containing substring
func TestCases(t *testing.T) {
	dirs, err := filepath.Glob("../testdata/cases/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no cases in testdata/cases")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { runCase(t, dir) })
	}
}

type expectation struct {
	line  int
	words []string
	raw   string
}

func readExpect(t *testing.T, dir string) []expectation {
	f, err := os.Open(filepath.Join(dir, "expect"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []expectation
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, expectation{line: n, words: strings.Fields(line), raw: line})
	}
	return out
}

func runCase(t *testing.T, dir string) {
	exps := readExpect(t, dir)
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{ContextDir: abs, BuildArgs: map[string]string{}}
	var fails *expectation
	for i, e := range exps {
		switch e.words[0] {
		case "arg":
			k, v, _ := strings.Cut(e.words[1], "=")
			opts.BuildArgs[k] = v
		case "target":
			opts.Target = e.words[1]
		case "secret":
			opts.Secrets = append(opts.Secrets, strings.Replace(e.words[1], "src=", "src="+abs+"/", 1))
		case "fails":
			fails = &exps[i]
		}
	}
	res, log, err := testBuild(t, opts)
	if fails != nil {
		if err == nil {
			t.Fatalf("expect:%d: build succeeded, want a failure", fails.line)
		}
		want := fmt.Sprintf("%s:%s:", filepath.Join(abs, "Dockerfile"), fails.words[1])
		msg := strings.Join(fails.words[2:], " ")
		if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), msg) {
			t.Fatalf("expect:%d: error %q, want prefix %q and %q", fails.line, err, want, msg)
		}
		return
	}
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	rootfs := exportRootfs(t, res)
	cfgJSON, err := json.Marshal(res.Image.Config.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, e := range exps {
		checkExpectation(t, e, rootfs, cfg, res)
	}
}

func checkExpectation(t *testing.T, e expectation, rootfs string, cfg map[string]json.RawMessage, res *Result) {
	t.Helper()
	fail := func(format string, a ...any) {
		t.Errorf("expect:%d: %s: %s", e.line, e.raw, fmt.Sprintf(format, a...))
	}
	w := e.words
	switch {
	case w[0] == "arg" || w[0] == "target" || w[0] == "fails" || w[0] == "secret":
	case w[0] == "config":
		rest := strings.TrimSpace(strings.TrimPrefix(e.raw, "config "+w[1]))
		var want, got any
		if err := json.Unmarshal([]byte(rest), &want); err != nil {
			fail("bad JSON: %v", err)
			return
		}
		if raw, ok := cfg[w[1]]; ok {
			_ = json.Unmarshal(raw, &got)
		}
		if !reflect.DeepEqual(want, got) {
			fail("got %v", got)
		}
	case w[0] == "layers":
		if n, _ := strconv.Atoi(w[1]); n != len(res.Image.Layers) {
			fail("got %d layers", len(res.Image.Layers))
		}
	case w[0] == "history":
		if n, _ := strconv.Atoi(w[1]); n != len(res.Image.Config.History) {
			fail("got %d history entries", len(res.Image.Config.History))
		}
	case strings.HasPrefix(w[0], "!"):
		if _, err := os.Lstat(filepath.Join(rootfs, w[0][1:])); err == nil {
			fail("exists")
		}
	case strings.HasPrefix(w[0], "/"):
		checkPath(t, e, rootfs, fail)
	default:
		fail("unknown expectation")
	}
}

func checkPath(t *testing.T, e expectation, rootfs string, fail func(string, ...any)) {
	w := e.words
	p := filepath.Join(rootfs, w[0])
	fi, err := os.Lstat(p)
	if err != nil {
		fail("%v", err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	kind := map[uint32]string{syscall.S_IFREG: "file", syscall.S_IFDIR: "dir", syscall.S_IFLNK: "symlink", syscall.S_IFIFO: "fifo", syscall.S_IFCHR: "chardev"}[st.Mode&syscall.S_IFMT]
	if kind != w[1] && !(w[1] == "hardlink" && kind == "file") {
		fail("is a %s", kind)
		return
	}
	switch w[1] {
	case "symlink":
		target, _ := os.Readlink(p)
		if len(w) < 4 || target != w[3] {
			fail("points to %q", target)
		}
		return
	case "hardlink":
		other, err := os.Lstat(filepath.Join(rootfs, w[2]))
		if err != nil || !os.SameFile(fi, other) {
			fail("not the same file as %s", w[2])
		}
		return
	}
	if len(w) > 2 {
		if mode := fmt.Sprintf("%04o", st.Mode&07777); mode != w[2] {
			fail("mode %s", mode)
		}
	}
	if len(w) > 3 {
		if owner := fmt.Sprintf("%d:%d", st.Uid, st.Gid); owner != w[3] {
			fail("owner %s", owner)
		}
	}
	if len(w) > 4 {
		rest := e.raw[strings.Index(e.raw, w[3])+len(w[3]):]
		want, err := strconv.Unquote(strings.TrimSpace(rest))
		if err != nil {
			fail("bad content string: %v", err)
			return
		}
		got, _ := os.ReadFile(p)
		if string(got) != want {
			fail("content %q", got)
		}
	}
}

// exportRootfs writes the image's root file system to a temporary directory.
func exportRootfs(t *testing.T, res *Result) string {
	t.Helper()
	rootfs := t.TempDir()
	if err := exporter.Export(context.Background(), testStore, testSnaps, res.Manifest, exporter.Output{Type: "local", Dest: rootfs}, nil); err != nil {
		t.Fatalf("export rootfs: %v", err)
	}
	return rootfs
}
