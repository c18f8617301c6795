package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DefaultHostname is the sandbox's host name when the spec gives none.
const DefaultHostname = "kiln"

// defaultResolvConf is used when the host has no /etc/resolv.conf (as Docker does).
const defaultResolvConf = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"

// etcFile is a file kiln writes for the sandbox and mounts read-only over the image's own.
type etcFile struct {
	target string // inside the root
	source string // the written file, outside the root
}

// writeEtcFiles writes /etc/hosts, /etc/resolv.conf and /etc/hostname for a sandbox named
// hostname into dir (outside the root, so nothing of them lands in the step's layer).
func writeEtcFiles(dir, hostname string) ([]etcFile, error) {
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if errors.Is(err, fs.ErrNotExist) {
		resolv, err = []byte(defaultResolvConf), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read host resolv.conf: %w", err)
	}
	// The sandbox shares the host's network, so the host's name servers (127.x included) work.
	files := []struct {
		name    string
		content []byte
	}{
		{"hosts", []byte("127.0.0.1\tlocalhost " + hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n")},
		{"resolv.conf", resolv},
		{"hostname", []byte(hostname + "\n")},
	}
	out := make([]etcFile, 0, len(files))
	for _, f := range files {
		src := filepath.Join(dir, f.name)
		if err := os.WriteFile(src, f.content, 0o644); err != nil {
			return nil, fmt.Errorf("write sandbox %s: %w", f.name, err)
		}
		out = append(out, etcFile{target: "/etc/" + f.name, source: src})
	}
	return out, nil
}
