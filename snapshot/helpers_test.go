package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

var kinds = []string{KindOverlay, KindCopy}

// fixedTime is the mtime tests give what they change, so layers can be compared byte for byte.
var fixedTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// newSnapshotter opens a snapshotter of kind in a fresh dir, and at the end checks that nothing
// is left mounted under it.
func newSnapshotter(t testing.TB, kind string) Snapshotter {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := filepath.Join(t.TempDir(), "snapshots")
	t.Cleanup(func() { checkNoMounts(t, dir) })
	s, err := New(dir, kind)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkNoMounts(t testing.TB, dir string) {
	t.Helper()
	pts, err := mountsUnder(dir)
	if err != nil {
		t.Errorf("read mountinfo: %v", err)
		return
	}
	if len(pts) > 0 {
		t.Errorf("left mounted: %v", pts)
		unmountAll(dir)
	}
}

// prepare is Prepare that aborts the snapshot at the end of the test unless it was committed.
func prepare(t testing.TB, s Snapshotter, parent string) *Active {
	t.Helper()
	a, err := s.Prepare(context.Background(), parent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(s.(interface{ Dir() string }).Dir(), a.ID)); err == nil {
			s.Abort(context.Background(), a)
		}
	})
	return a
}

type committed struct {
	layer Layer
	chain string
	blob  []byte
}

func commit(t testing.TB, s Snapshotter, a *Active, opts CommitOptions) committed {
	t.Helper()
	var buf bytes.Buffer
	l, chain, err := s.Commit(context.Background(), a, &buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	return committed{l, chain, buf.Bytes()}
}

// build prepares over parent, runs change in the snapshot's root, and commits.
func build(t testing.TB, s Snapshotter, parent string, change func(root string)) committed {
	t.Helper()
	a := prepare(t, s, parent)
	change(a.Root)
	c := commit(t, s, a, CommitOptions{})
	checkLayer(t, c)
	return c
}

// checkLayer verifies a gzip layer with the standard library: blob digest and size, and the
// diff ID of the decompressed tar.
func checkLayer(t testing.TB, c committed) {
	t.Helper()
	if got := digest.FromBytes(c.blob); got != c.layer.Digest {
		t.Errorf("blob digest %s, layer says %s", got, c.layer.Digest)
	}
	if int64(len(c.blob)) != c.layer.Size {
		t.Errorf("blob is %d bytes, layer says %d", len(c.blob), c.layer.Size)
	}
	tarb := untgz(t, c.blob)
	if got := digest.FromBytes(tarb); got != c.layer.DiffID {
		t.Errorf("tar digest %s, layer diff ID %s", got, c.layer.DiffID)
	}
}

func untgz(t testing.TB, blob []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// entry is a tar entry as tests look at it.
type entry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	data       string
	major      int64
	minor      int64
	xattrs     map[string]string
}

func tarEntries(t testing.TB, tarb []byte) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(bytes.NewReader(tarb))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e := entry{name: h.Name, link: h.Linkname, typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid,
			data: string(data), major: h.Devmajor, minor: h.Devminor}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: uname/gname %q/%q, want empty", h.Name, h.Uname, h.Gname)
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, paxXattrPrefix); ok {
				if e.xattrs == nil {
					e.xattrs = map[string]string{}
				}
				e.xattrs[x] = v
			}
		}
		out = append(out, e)
	}
}

func entryNames(es []entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.name)
	}
	return out
}

func findEntry(es []entry, name string) (entry, bool) {
	for _, e := range es {
		if e.name == name {
			return e, true
		}
	}
	return entry{}, false
}

// treeOf describes every file under root, one line each, for comparing trees.
func treeOf(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		d := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			d += fmt.Sprintf(" data=%q", b)
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					d += " linkto=" + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			d += " target=" + l
		case unix.S_IFCHR, unix.S_IFBLK:
			d += fmt.Sprintf(" dev=%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFDIR:
		default:
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			d += fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
		}
		xs, err := listXattrs(p)
		if err != nil {
			return err
		}
		var keys []string
		for k := range xs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d += fmt.Sprintf(" %s=%q", k, xs[k])
		}
		out[rel] = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(t testing.TB, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %s (%s)", k, w)
		} else if g != w {
			t.Errorf("%s:\n got  %s\n want %s", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("extra %s (%s)", k, g)
		}
	}
}

// fs wraps file operations on a root for test scenarios; every call fails the test on error and
// gives what it touches the fixed mtime, so two runs of a scenario make identical trees.
type fs struct {
	t    testing.TB
	root string
}

func (f fs) p(rel string) string { return filepath.Join(f.root, rel) }

func (f fs) check(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// fix gives rel paths the fixed mtime (without following symlinks).
func (f fs) fix(rels ...string) {
	f.t.Helper()
	for _, r := range rels {
		f.check(setTimes(f.p(r), fixedTime, fixedTime))
	}
}

func (f fs) mkdir(rel string, mode os.FileMode) {
	f.t.Helper()
	f.check(os.Mkdir(f.p(rel), 0o700))
	f.check(unix.Chmod(f.p(rel), uint32(mode)))
}

func (f fs) write(rel, data string, mode os.FileMode) {
	f.t.Helper()
	f.check(os.WriteFile(f.p(rel), []byte(data), 0o600))
	f.check(unix.Chmod(f.p(rel), uint32(mode)))
}

func (f fs) rm(rel string) {
	f.t.Helper()
	f.check(os.RemoveAll(f.p(rel)))
}

func (f fs) symlink(target, rel string) {
	f.t.Helper()
	f.check(os.Symlink(target, f.p(rel)))
}

func (f fs) link(old, rel string) {
	f.t.Helper()
	f.check(os.Link(f.p(old), f.p(rel)))
}

func (f fs) chmod(rel string, mode uint32) {
	f.t.Helper()
	f.check(unix.Chmod(f.p(rel), mode))
}

func (f fs) chown(rel string, uid, gid int) {
	f.t.Helper()
	f.check(os.Lchown(f.p(rel), uid, gid))
}

func (f fs) mknod(rel string, mode uint32, major, minor uint32) {
	f.t.Helper()
	f.check(unix.Mknod(f.p(rel), mode, int(unix.Mkdev(major, minor))))
	f.check(unix.Chmod(f.p(rel), mode&0o7777))
}

func (f fs) setxattr(rel, k, v string) {
	f.t.Helper()
	f.check(unix.Lsetxattr(f.p(rel), k, []byte(v), 0))
}

// tarBuilder makes layer tars by hand for apply tests.
type tarBuilder struct {
	buf bytes.Buffer
	tw  *tar.Writer
}

func newTar() *tarBuilder {
	b := &tarBuilder{}
	b.tw = tar.NewWriter(&b.buf)
	return b
}

func (b *tarBuilder) add(t testing.TB, h tar.Header, data string) *tarBuilder {
	t.Helper()
	if h.Typeflag == tar.TypeReg {
		h.Size = int64(len(data))
	}
	if h.ModTime.IsZero() {
		h.ModTime = fixedTime
	}
	if h.Mode == 0 {
		h.Mode = 0o644
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
	}
	if err := b.tw.WriteHeader(&h); err != nil {
		t.Fatal(err)
	}
	if _, err := b.tw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *tarBuilder) dir(t testing.TB, name string) *tarBuilder {
	return b.add(t, tar.Header{Typeflag: tar.TypeDir, Name: name}, "")
}

func (b *tarBuilder) file(t testing.TB, name, data string) *tarBuilder {
	return b.add(t, tar.Header{Typeflag: tar.TypeReg, Name: name}, data)
}

func (b *tarBuilder) bytes(t testing.TB) ([]byte, digest.Digest) {
	t.Helper()
	if err := b.tw.Close(); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b.buf.Bytes())
	return b.buf.Bytes(), digest.NewDigestFromBytes(digest.SHA256, h[:])
}

// view returns the tree of a committed snapshot.
func view(t testing.TB, s Snapshotter, chain string) map[string]string {
	t.Helper()
	root, release, err := s.View(context.Background(), chain)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := release(); err != nil {
			t.Error(err)
		}
	}()
	return treeOf(t, root)
}
