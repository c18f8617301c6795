package builder

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// maxSecretSize is BuildKit's limit on one secret.
const maxSecretSize = 500 * 1024

// secretSource is one --secret: where the secret's value is read from when a step needs it.
type secretSource struct {
	id   string
	file string // a file on the host, or
	env  string // an environment variable of kiln's
}

// parseSecrets reads --secret values as buildx spells them: id=ID[,src=FILE|,env=VAR]
// [,type=file|env]. As in BuildKit, a secret with neither source is the variable named ID when
// kiln's environment has one, else the file named ID.
func parseSecrets(values []string) (map[string]secretSource, error) {
	out := map[string]secretSource{}
	for _, v := range values {
		fields, err := csv.NewReader(strings.NewReader(v)).Read()
		if err != nil {
			return nil, fmt.Errorf("invalid --secret %q: %w", v, err)
		}
		var s secretSource
		typ := ""
		for _, f := range fields {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("invalid --secret %q: field %q must be a key=value pair", v, f)
			}
			switch strings.ToLower(k) {
			case "type":
				if val != "file" && val != "env" {
					return nil, fmt.Errorf("invalid --secret %q: unsupported secret type %q", v, val)
				}
				typ = val
			case "id":
				s.id = val
			case "source", "src":
				s.file = val
			case "env":
				s.env = val
			default:
				return nil, fmt.Errorf("invalid --secret %q: unexpected key %q", v, k)
			}
		}
		if typ == "env" && s.env == "" {
			s.env, s.file = s.file, ""
		}
		if s.id == "" {
			return nil, fmt.Errorf("invalid --secret %q: secret missing ID", v)
		}
		if s.env == "" && s.file == "" {
			if _, ok := os.LookupEnv(s.id); ok {
				s.env = s.id
			} else {
				s.file = s.id
			}
		}
		if s.file != "" {
			fi, err := os.Stat(s.file)
			if err != nil {
				return nil, fmt.Errorf("secret %s: failed to stat %s: %w", s.id, s.file, err)
			}
			if fi.Size() > maxSecretSize {
				return nil, fmt.Errorf("secret %s too big. max size 500KB", s.id)
			}
		}
		out[s.id] = s
	}
	return out, nil
}

// value reads the secret.
func (s secretSource) value() ([]byte, error) {
	if s.env != "" {
		return []byte(os.Getenv(s.env)), nil
	}
	b, err := os.ReadFile(s.file)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.id, err)
	}
	if len(b) > maxSecretSize {
		return nil, fmt.Errorf("secret %s too big. max size 500KB", s.id)
	}
	return b, nil
}

// secretMount is type=secret, as BuildKit's dispatchSecret reads it: the id is id= (or source=,
// or the target's base name); the secret is a file at the target (default
// /run/secrets/<id>), and/or, with env=, a variable of the step's process. Only the id, target
// and options are part of the step's key: never the secret, which is also never written to the
// snapshot (the file is bound from outside it, and removed once the step ends).
func secretMount(m *instructions.Mount, secrets map[string]secretSource) (runMount, error) {
	id := m.CacheID
	if m.Source != "" {
		id = m.Source
	}
	if id == "" {
		if m.Target == "" {
			return runMount{}, fmt.Errorf("one of source, target required")
		}
		id = path.Base(m.Target)
	}
	target := ""
	if m.Target != "" {
		target = path.Join("/", m.Target)
	} else if m.Env == nil {
		target = "/run/secrets/" + path.Base(id)
	}
	uid, gid, mode := deref(m.UID, 0), deref(m.GID, 0), deref(m.Mode, 0o400)
	key := mountKey{Type: "secret", ID: id, Target: target, Env: m.Env, Required: m.Required,
		Mode: m.Mode, UID: m.UID, GID: m.GID}
	return runMount{key: key, setup: func(ctx context.Context, s *mountSet) error {
		src, ok := secrets[id]
		if !ok {
			if m.Required {
				return fmt.Errorf("secret %s: not found (pass it with --secret id=%s,src=FILE or id=%s,env=VAR)", id, id, id)
			}
			return nil
		}
		data, err := src.value()
		if err != nil {
			return err
		}
		if m.Env != nil {
			s.env = append(s.env, *m.Env+"="+string(data))
		}
		if target == "" {
			return nil
		}
		p, release, err := writeSecretFile(data, int(uid), int(gid), os.FileMode(mode&0o777))
		if err != nil {
			return fmt.Errorf("secret %s: %w", id, err)
		}
		s.onRelease(release)
		s.add(kilnrt.Mount{Type: "bind", Source: p, Target: target, ReadOnly: true})
		return nil
	}}, nil
}

// writeSecretFile writes data to a new file, owned and moded as the mount asks, in a new
// directory only root can enter, and returns the file and the function that removes it. It
// goes to /dev/shm, a tmpfs, where there is one, so that secrets never touch a disk.
func writeSecretFile(data []byte, uid, gid int, mode os.FileMode) (string, func() error, error) {
	var dir string
	var err error
	for _, d := range []string{"/dev/shm", os.TempDir()} {
		if dir, err = os.MkdirTemp(d, "kiln-secret-"); err == nil {
			break
		}
	}
	if err != nil {
		return "", nil, err
	}
	remove := func() error { return os.RemoveAll(dir) }
	p := filepath.Join(dir, "secret")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Chown(p, uid, gid)
	}
	if err == nil {
		err = os.Chmod(p, mode)
	}
	if err != nil {
		remove()
		return "", nil, err
	}
	return p, remove, nil
}
