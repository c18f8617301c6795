package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/passwd"), "# comment\n\n"+testPasswd+
		"broken line\nbad:x:notanumber:0::/:\nnohome:x:1500:1500::\n")
	writeFile(t, filepath.Join(root, "etc/group"), testGroup+"staff:x:50:app,nohome,app\nbadgroup:x:x:\n")

	tests := []struct {
		spec    string
		want    User
		wantErr string
	}{
		{"", User{UID: 0, GID: 0, Groups: []uint32{10}, Home: "/root"}, ""},
		{"root", User{UID: 0, GID: 0, Groups: []uint32{10}, Home: "/root"}, ""},
		{"app", User{UID: 1000, GID: 1000, Groups: []uint32{10, 50}, Home: "/home/app"}, ""},
		{"1000", User{UID: 1000, GID: 1000, Groups: []uint32{10, 50}, Home: "/home/app"}, ""},
		{"app:wheel", User{UID: 1000, GID: 10, Home: "/home/app"}, ""},
		{"app:50", User{UID: 1000, GID: 50, Home: "/home/app"}, ""},
		{"1000:1000", User{UID: 1000, GID: 1000, Home: "/home/app"}, ""},
		{"1000:nogroup", User{UID: 1000, GID: 65534, Home: "/home/app"}, ""},
		{"app:", User{UID: 1000, GID: 1000, Groups: []uint32{10, 50}, Home: "/home/app"}, ""},
		{"nobody", User{UID: 65534, GID: 65534, Groups: []uint32{65534}, Home: "/nonexistent"}, ""},
		{"nohome", User{UID: 1500, GID: 1500, Groups: []uint32{50}, Home: "/"}, ""},
		{"4242", User{UID: 4242, GID: 0, Home: "/"}, ""},
		{"4242:7", User{UID: 4242, GID: 7, Home: "/"}, ""},
		{"4242:wheel", User{UID: 4242, GID: 10, Home: "/"}, ""},
		{"ghost", User{}, "unable to find user ghost"},
		{"ghost:wheel", User{}, "unable to find user ghost"},
		{"app:ghosts", User{}, "unable to find group ghosts"},
		{"bad", User{}, "unable to find user bad"},
		{"-1", User{}, "unable to find user -1"},
		{"4294967295", User{}, "unable to find user 4294967295"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ResolveUser(root, tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolveUser(%q) = %+v, %v; want error %q", tt.spec, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tt.spec, err)
			}
			if got.UID != tt.want.UID || got.GID != tt.want.GID || got.Home != tt.want.Home || !slices.Equal(got.Groups, tt.want.Groups) {
				t.Errorf("ResolveUser(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestResolveUserNoEtc(t *testing.T) {
	root := t.TempDir()
	for spec, want := range map[string]User{"": {Home: "/"}, "1000": {UID: 1000, Home: "/"}, "1000:1000": {UID: 1000, GID: 1000, Home: "/"}} {
		got, err := ResolveUser(root, spec)
		if err != nil || got.UID != want.UID || got.GID != want.GID || got.Home != want.Home || len(got.Groups) != 0 {
			t.Errorf("ResolveUser(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	if _, err := ResolveUser(root, "app"); err == nil || !strings.Contains(err.Error(), "app") {
		t.Errorf("ResolveUser(app) without passwd = %v, want an error naming app", err)
	}
	if _, err := ResolveUser(root, "0:staff"); err == nil || !strings.Contains(err.Error(), "staff") {
		t.Errorf("ResolveUser(0:staff) without group = %v, want an error naming staff", err)
	}
}

// A symlinked /etc/passwd is resolved inside the root, never on the host.
func TestResolveUserSymlinkStaysInRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/real-passwd"), "inroot:x:2000:2000::/in:/bin/sh\n")
	if err := os.Symlink("/etc/real-passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	// Without a secure join the group file would be the host's /etc/passwd, which has a "root"
	// entry; inside the root it is the image's passwd, which has none.
	if err := os.Symlink("../../../../../../../etc/passwd", filepath.Join(root, "etc/group")); err != nil {
		t.Fatal(err)
	}
	u, err := ResolveUser(root, "inroot")
	if err != nil || u.UID != 2000 || u.Home != "/in" {
		t.Errorf("ResolveUser(inroot) = %+v, %v", u, err)
	}
	if _, err := ResolveUser(root, "root"); err == nil {
		t.Error("ResolveUser(root) read the host's /etc/passwd")
	}
	if _, err := ResolveUser(root, "0:root"); err == nil {
		t.Error("ResolveUser(0:root) read the host's /etc/group")
	}
}
