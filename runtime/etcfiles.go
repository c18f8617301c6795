package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// DefaultHostname is the sandbox's host name when the spec gives none.
const DefaultHostname = "kiln"

// defaultResolvConf is used when the host has no /etc/resolv.conf (as Docker does).
const defaultResolvConf = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"

// etcFiles returns /etc/hosts, /etc/resolv.conf and /etc/hostname for a sandbox named
// hostname, with the host's network or (isolated) one of its own. The init writes them outside
// the root and binds them read-only over the image's own files, so nothing of them lands in the
// step's layer.
func etcFiles(hostname string, isolated bool) ([]fileMount, error) {
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if errors.Is(err, fs.ErrNotExist) {
		resolv, err = []byte(defaultResolvConf), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read host resolv.conf: %w", err)
	}
	// localhost and the step's own name resolve on either network: loopback is up in both.
	return []fileMount{
		{Target: "/etc/hosts", Content: []byte("127.0.0.1\tlocalhost " + hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n")},
		{Target: "/etc/resolv.conf", Content: resolvConfFor(resolv, isolated)},
		{Target: "/etc/hostname", Content: []byte(hostname + "\n")},
	}, nil
}
