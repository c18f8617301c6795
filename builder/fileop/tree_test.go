package fileop

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// node describes one object of a test tree.
type node struct {
	path    string
	kind    byte // 'f' file, 'd' dir, 'l' symlink, 'h' hardlink to link
	content string
	mode    os.FileMode
	link    string
	uid     int
	gid     int
}

func file(p, content string, mode os.FileMode) node {
	return node{path: p, kind: 'f', content: content, mode: mode}
}
func dir(p string, mode os.FileMode) node { return node{path: p, kind: 'd', mode: mode} }
func symlink(p, target string) node       { return node{path: p, kind: 'l', link: target} }
func hardlink(p, to string) node          { return node{path: p, kind: 'h', link: to} }
func owned(n node, uid, gid int) node     { n.uid, n.gid = uid, gid; return n }

// testMtime is what every test file's mtime is set to, so tests can check
// that Copy keeps it.
var testMtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// mkTree creates nodes below root (parents as 0755 dirs), in order.
func mkTree(t testing.TB, root string, nodes ...node) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(root, n.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch n.kind {
		case 'f':
			if err := os.WriteFile(p, []byte(n.content), 0o600); err != nil {
				t.Fatal(err)
			}
		case 'd':
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case 'l':
			if err := os.Symlink(n.link, p); err != nil {
				t.Fatal(err)
			}
		case 'h':
			if err := os.Link(filepath.Join(root, n.link), p); err != nil {
				t.Fatal(err)
			}
			continue // same inode: keep its owner and mode
		}
		if err := os.Lchown(p, n.uid, n.gid); err != nil {
			t.Fatal(err)
		}
		if n.kind != 'l' { // after chown, which clears set-id bits
			if err := os.Chmod(p, n.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Times last: creating children changes a directory's mtime.
	for i := len(nodes) - 1; i >= 0; i-- {
		p := filepath.Join(root, nodes[i].path)
		if nodes[i].kind == 'l' {
			continue
		}
		if err := os.Chtimes(p, testMtime, testMtime); err != nil {
			t.Fatal(err)
		}
	}
}

// want is the expected state of one path in a destination tree.
type want struct {
	path    string
	kind    byte // 'f', 'd', 'l', or 0 for "must not exist"
	content string
	mode    os.FileMode // permission and special bits; 0 = don't check
	link    string
	uid     int
	gid     int
	mtime   bool // check that the mtime is testMtime
}

func wFile(p, content string, mode os.FileMode) want {
	return want{path: p, kind: 'f', content: content, mode: mode}
}
func wDir(p string, mode os.FileMode) want { return want{path: p, kind: 'd', mode: mode} }
func wLink(p, target string) want          { return want{path: p, kind: 'l', link: target} }
func wAbsent(p string) want                { return want{path: p} }
func wOwned(w want, uid, gid int) want     { w.uid, w.gid = uid, gid; return w }

// check verifies ws against the real tree below root with Lstat.
func check(t *testing.T, root string, ws ...want) {
	t.Helper()
	for _, w := range ws {
		p := filepath.Join(root, w.path)
		fi, err := os.Lstat(p)
		if w.kind == 0 {
			if err == nil {
				t.Errorf("%s: exists, want absent", w.path)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch w.kind {
		case 'f':
			if !fi.Mode().IsRegular() {
				t.Errorf("%s: type %v, want file", w.path, fi.Mode().Type())
				continue
			}
			dt, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: %v", w.path, err)
			} else if string(dt) != w.content {
				t.Errorf("%s: content %q, want %q", w.path, dt, w.content)
			}
		case 'd':
			if !fi.IsDir() {
				t.Errorf("%s: type %v, want dir", w.path, fi.Mode().Type())
				continue
			}
		case 'l':
			if fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s: type %v, want symlink", w.path, fi.Mode().Type())
				continue
			}
			if l, _ := os.Readlink(p); l != w.link {
				t.Errorf("%s: link %q, want %q", w.path, l, w.link)
			}
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky); w.mode != 0 && got != w.mode {
			t.Errorf("%s: mode %v, want %v", w.path, got, w.mode)
		}
		if int(st.Uid) != w.uid || int(st.Gid) != w.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", w.path, st.Uid, st.Gid, w.uid, w.gid)
		}
		if w.mtime && !fi.ModTime().Equal(testMtime) {
			t.Errorf("%s: mtime %v, want %v", w.path, fi.ModTime(), testMtime)
		}
	}
}

// roots makes a source and a destination root for one test case.
func roots(t *testing.T) (src, dst string) {
	t.Helper()
	d := t.TempDir()
	src, dst = filepath.Join(d, "src"), filepath.Join(d, "dst")
	for _, p := range []string{src, dst} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return src, dst
}
