package runtime

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestRunMountBind(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "dir/in.txt"), "from the host\n")
	writeFile(t, filepath.Join(src, "file.txt"), "a file\n")

	tests := []struct {
		name    string
		mount   Mount
		script  string
		want    string
		hostNew string // a file the step must have written on the host ("" none)
	}{
		{"dir read-write", Mount{Type: MountBind, Source: filepath.Join(src, "dir"), Target: "/src"},
			`cat /src/in.txt; echo new > /src/out.txt && echo wrote`, "from the host\nwrote\n", "dir/out.txt"},
		{"dir read-only", Mount{Type: MountBind, Source: filepath.Join(src, "dir"), Target: "/src", ReadOnly: true},
			`cat /src/in.txt; (echo new > /src/ro.txt) 2>/dev/null && echo WROTE; touch /src/in.txt 2>/dev/null && echo TOUCHED; echo end`,
			"from the host\nend\n", ""},
		{"file read-only", Mount{Type: MountBind, Source: filepath.Join(src, "file.txt"), Target: "/etc/conf/file.txt", ReadOnly: true},
			`cat /etc/conf/file.txt; (echo x >> /etc/conf/file.txt) 2>/dev/null && echo WROTE; echo end`, "a file\nend\n", ""},
		{"file read-write", Mount{Type: MountBind, Source: filepath.Join(src, "file.txt"), Target: "/f"},
			`cat /f`, "a file\n", ""},
		{"nested target, missing parents", Mount{Type: MountBind, Source: filepath.Join(src, "dir"), Target: "/a/b/c"},
			`cat /a/b/c/in.txt`, "from the host\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newTestRoot(t, true)
			out, err := runShell(t, root, tt.script, func(s *Spec) { s.Mounts = []Mount{tt.mount} })
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if out != tt.want {
				t.Errorf("output %q, want %q", out, tt.want)
			}
			if tt.hostNew != "" {
				if b, err := os.ReadFile(filepath.Join(src, tt.hostNew)); err != nil || string(b) != "new\n" {
					t.Errorf("write through the bind: %q, %v", b, err)
				}
			}
			if _, err := os.Stat(filepath.Join(src, "dir/ro.txt")); err == nil {
				t.Error("read-only bind was written")
			}
			assertNoMountUnder(t, root)
			assertNoMountUnder(t, src)
			// The target and its parents were stubs: none of them is left in the root.
			top := strings.Split(strings.TrimPrefix(tt.mount.Target, "/"), "/")[0]
			if top != "etc" {
				if _, err := os.Lstat(filepath.Join(root, top)); err == nil {
					t.Errorf("mount stub /%s left in the root", top)
				}
			}
			if _, err := os.Lstat(filepath.Join(root, "etc/conf")); err == nil {
				t.Error("mount stub /etc/conf left in the root")
			}
		})
	}
}

// A read-only bind of a tree with a mount inside it is read-only all the way down.
func TestRunMountBindReadOnlyRecursive(t *testing.T) {
	src := t.TempDir()
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(sub, syscall.MNT_DETACH) })
	root := newTestRoot(t, true)
	out, err := runShell(t, root, `touch /src/sub/x 2>/dev/null && echo WROTE; grep -c ' /src/sub ' /proc/self/mountinfo`,
		func(s *Spec) { s.Mounts = []Mount{{Type: MountBind, Source: src, Target: "/src", ReadOnly: true}} })
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out != "1\n" {
		t.Errorf("output %q, want the submount present and read-only", out)
	}
}

func TestRunMountUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	root := newTestRoot(t, true)
	out, err := runShell(t, root, `test -S /run/agent.sock && echo socket; stat -c %i /run/agent.sock`,
		func(s *Spec) { s.Mounts = []Mount{{Type: MountBind, Source: sock, Target: "/run/agent.sock"}} })
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := "socket\n" + strconv.FormatUint(st.Ino, 10) + "\n"; out != want {
		t.Errorf("output %q, want %q (the host socket's inode)", out, want)
	}
	if _, err := os.Lstat(filepath.Join(root, "run")); err == nil {
		t.Error("mount stub /run left in the root")
	}
}

func TestRunMountTmpfs(t *testing.T) {
	root := newTestRoot(t, true)
	writeFile(t, filepath.Join(root, "cache/image-file"), "hidden\n")
	out, err := runShell(t, root, `
ls -A /cache; stat -c %a /cache
stat -c %a /t
dd if=/dev/zero of=/t/big bs=1024 count=2048 2>/dev/null && echo FITS || echo full
echo ok > /cache/new; cat /cache/new
cat /t/nested/in.txt`, func(s *Spec) {
		s.Mounts = []Mount{
			{Type: MountTmpfs, Target: "/cache"},
			{Type: MountTmpfs, Target: "/t", Size: 1 << 20, Mode: 0o750},
			// A bind inside a tmpfs: its target is made inside the tmpfs.
			{Type: MountBind, Source: bindSrc(t), Target: "/t/nested"},
		}
	})
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := "1777\n750\nfull\nok\nbound\n"
	if out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	// Nothing written in the tmpfs reached the root; the image's own file is there as it was.
	if _, err := os.Lstat(filepath.Join(root, "cache/new")); err == nil {
		t.Error("a tmpfs write reached the root")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "cache/image-file")); string(b) != "hidden\n" {
		t.Errorf("image file under the tmpfs: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(root, "t")); err == nil {
		t.Error("mount stub /t left in the root")
	}
	assertNoMountUnder(t, root)
}

func bindSrc(t *testing.T) string {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "in.txt"), "bound\n")
	return dir
}

// A symlink in the image cannot send a mount outside the root.
func TestRunMountTargetSymlinkStaysInRoot(t *testing.T) {
	root := newTestRoot(t, true)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../"+outside, filepath.Join(root, "escape2")); err != nil {
		t.Fatal(err)
	}
	out, err := runShell(t, root, `ls /escape/m /escape2/m`, func(s *Spec) {
		s.Mounts = []Mount{
			{Type: MountTmpfs, Target: "/escape/m"},
			{Type: MountBind, Source: bindSrc(t), Target: "/escape2/m"},
		}
	})
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("mount stubs made outside the root: %v", ents)
	}
	assertNoMountUnder(t, outside)
	assertNoMountUnder(t, root)
}

func TestRunMountErrors(t *testing.T) {
	root := newTestRoot(t, true)
	file := filepath.Join(t.TempDir(), "f")
	writeFile(t, file, "x")
	writeFile(t, filepath.Join(root, "adir/x"), "x")
	tests := []struct {
		name  string
		mount Mount
		want  string
	}{
		{"relative target", Mount{Type: MountTmpfs, Target: "rel"}, "want an absolute path"},
		{"root target", Mount{Type: MountTmpfs, Target: "/"}, "want an absolute path other than /"},
		{"unknown type", Mount{Type: "cache", Target: "/c"}, `unknown type "cache"`},
		{"missing source", Mount{Type: MountBind, Source: "/no/such/dir", Target: "/c"}, "no such file"},
		{"relative source", Mount{Type: MountBind, Source: "rel", Target: "/c"}, "not an absolute path"},
		{"file onto dir", Mount{Type: MountBind, Source: file, Target: "/adir"}, "is not a file"},
		{"tmpfs source", Mount{Type: MountTmpfs, Source: "/x", Target: "/c"}, "has no source"},
		{"tmpfs bad mode", Mount{Type: MountTmpfs, Target: "/c", Mode: 0o17777}, "invalid mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runShell(t, root, "true", func(s *Spec) { s.Mounts = []Mount{tt.mount} })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			if _, err := os.Lstat(filepath.Join(root, "c")); err == nil {
				t.Error("stub /c left after a refused mount")
			}
		})
	}
}
