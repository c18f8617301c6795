package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// User is a resolved user: what the step's process runs as.
type User struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups from the image's /etc/group
	Home     string
}

// ResolveUser resolves spec (name or uid, optionally :group or :gid) in the image's own
// /etc/passwd and /etc/group under root, joined safely (symlinks stay inside root).
// A numeric uid missing from passwd is allowed (gid then defaults to 0 unless given); a name that
// cannot be found is an error.
//
// It follows runc (and so Docker and BuildKit): a numeric user is looked up by uid only, a name
// by name only; supplementary groups are the groups whose member list names the user, and only
// when no group is given explicitly.
func ResolveUser(root, spec string) (User, error) {
	userArg, groupArg, _ := strings.Cut(spec, ":")
	if userArg == "" {
		userArg = "0"
	}
	users, err := readPasswd(root)
	if err != nil {
		return User{}, fmt.Errorf("resolve user %q: %w", spec, err)
	}

	u := User{Home: "/"}
	var name string
	uid, uidErr := parseID(userArg)
	found := false
	for _, p := range users {
		if (uidErr != nil && p.name == userArg) || (uidErr == nil && p.uid == uid) {
			u.UID, u.GID, name = p.uid, p.gid, p.name
			if p.home != "" {
				u.Home = p.home
			}
			found = true
			break
		}
	}
	if !found {
		if uidErr != nil {
			return User{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userArg)
		}
		u.UID = uid
	}

	if groupArg == "" && name == "" {
		return u, nil
	}
	groups, err := readGroup(root)
	if err != nil {
		return User{}, fmt.Errorf("resolve user %q: %w", spec, err)
	}
	if groupArg != "" {
		gid, gidErr := parseID(groupArg)
		if gidErr == nil {
			u.GID = gid
			return u, nil
		}
		for _, g := range groups {
			if g.name == groupArg {
				u.GID = g.gid
				return u, nil
			}
		}
		return User{}, fmt.Errorf("unable to find group %s: no matching entries in group file", groupArg)
	}
	for _, g := range groups {
		if slices.Contains(g.members, name) && !slices.Contains(u.Groups, g.gid) {
			u.Groups = append(u.Groups, g.gid)
		}
	}
	if len(u.Groups) == 0 {
		// A user in no group of its own still has its primary group as a supplementary one,
		// as under BuildKit (`id` shows groups=1000(app)).
		u.Groups = []uint32{u.GID}
	}
	return u, nil
}

// parseID parses a uid or gid as USER writes it. The top value is refused: it is (uid_t)-1,
// which the set*id calls take as "leave unchanged".
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, err
	}
	if n == math.MaxUint32 {
		return 0, fmt.Errorf("id %s out of range", s)
	}
	return uint32(n), nil
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// readImageFile reads a file of the image under root; a missing file reads as empty, as the
// image then simply defines no users or groups.
func readImageFile(root, path string) ([]byte, error) {
	p, err := SecureJoin(root, path)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// readPasswd parses /etc/passwd (name:password:uid:gid:gecos:home:shell). Malformed lines are
// skipped, as libc skips them.
func readPasswd(root string) ([]passwdEntry, error) {
	b, err := readImageFile(root, "/etc/passwd")
	if err != nil {
		return nil, err
	}
	var out []passwdEntry
	for _, f := range colonLines(b) {
		if len(f) < 4 {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if f[0] == "" || err1 != nil || err2 != nil {
			continue
		}
		e := passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid)}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out, nil
}

// readGroup parses /etc/group (name:password:gid:member,member,...).
func readGroup(root string) ([]groupEntry, error) {
	b, err := readImageFile(root, "/etc/group")
	if err != nil {
		return nil, err
	}
	var out []groupEntry
	for _, f := range colonLines(b) {
		if len(f) < 3 {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if f[0] == "" || err != nil {
			continue
		}
		e := groupEntry{name: f[0], gid: uint32(gid)}
		if len(f) > 3 {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					e.members = append(e.members, m)
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// colonLines splits a passwd-style file into the fields of each non-blank, non-comment line.
func colonLines(b []byte) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
