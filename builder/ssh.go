package builder

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// sshSource is one --ssh: an agent socket the build may forward to its steps.
type sshSource struct {
	id    string
	paths []string // empty: $SSH_AUTH_SOCK
}

// parseSSH reads --ssh values as buildx spells them: default|ID[=SOCKET|KEY[,KEY...]].
func parseSSH(values []string) (map[string]sshSource, error) {
	out := map[string]sshSource{}
	for _, v := range values {
		id, paths, hasPaths := strings.Cut(v, "=")
		if id == "" {
			id = "default"
		}
		s := sshSource{id: id}
		if hasPaths {
			s.paths = strings.Split(paths, ",")
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("invalid --ssh %q: duplicate agent ID %q", v, id)
		}
		out[id] = s
	}
	return out, nil
}

// socket is the agent socket to forward: the one path given, or $SSH_AUTH_SOCK. BuildKit also
// takes private key files and serves them as an agent itself; kiln forwards sockets only.
func (s sshSource) socket() (string, error) {
	p := ""
	switch {
	case len(s.paths) > 1:
		return "", fmt.Errorf("ssh %s: %d paths given: kiln forwards one agent socket, not key files", s.id, len(s.paths))
	case len(s.paths) == 1:
		p = s.paths[0]
	}
	if p == "" {
		p = os.Getenv("SSH_AUTH_SOCK")
	}
	if p == "" {
		return "", fmt.Errorf("ssh %s: invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set", s.id)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("ssh %s: %w", s.id, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return "", fmt.Errorf("ssh %s: %s is not a socket: kiln forwards agent sockets, not key files", s.id, p)
	}
	return p, nil
}

// sshMount is type=ssh, as BuildKit's dispatchSSH reads it: the agent of --ssh ID (default
// "default") at the target (default /run/buildkit/ssh_agent.N, N counting the RUN's ssh
// mounts), a socket owned uid:gid with mode (default 0:0, 0600). The step talks to a socket
// kiln serves, which passes each connection on to the agent: so the owner and mode are the
// mount's, and the agent's own socket never enters the sandbox.
func (bd *build) sshMount(m *instructions.Mount, n int, agents map[string]sshSource) (runMount, error) {
	if m.Source != "" {
		return runMount{}, fmt.Errorf("ssh does not support source")
	}
	id := m.CacheID
	if id == "" {
		id = "default"
	}
	target := fmt.Sprintf("/run/buildkit/ssh_agent.%d", n)
	if m.Target != "" {
		target = path.Join("/", m.Target)
	}
	uid, gid, mode := deref(m.UID, 0), deref(m.GID, 0), deref(m.Mode, 0o600)
	key := mountKey{Type: "ssh", ID: id, Target: target, Required: m.Required, Mode: m.Mode, UID: m.UID, GID: m.GID}
	return runMount{key: key, sshTarget: target, setup: func(ctx context.Context, s *mountSet) error {
		src, ok := agents[id]
		if !ok {
			if m.Required {
				return fmt.Errorf("no SSH key %q forwarded from the client (pass it with --ssh %s=SOCKET)", id, id)
			}
			return nil
		}
		upstream, err := src.socket()
		if err != nil {
			return err
		}
		p, stop, err := serveAgent(ctx, upstream, int(uid), int(gid), os.FileMode(mode&0o777))
		if err != nil {
			return fmt.Errorf("ssh %s: %w", id, err)
		}
		s.onRelease(stop)
		s.add(kilnrt.Mount{Type: "bind", Source: p, Target: target})
		return nil
	}}, nil
}

// agentProxy serves a unix socket and passes each connection to the agent's socket.
type agentProxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

// serveAgent starts a proxy to the agent socket upstream, on a new socket owned uid:gid with
// mode, and returns the socket's path and the function that stops the proxy and removes it.
func serveAgent(ctx context.Context, upstream string, uid, gid int, mode os.FileMode) (string, func() error, error) {
	dir, err := os.MkdirTemp("", "kiln-ssh-")
	if err != nil {
		return "", nil, err
	}
	p := filepath.Join(dir, "agent.sock")
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", p)
	if err == nil {
		if err = os.Chown(p, uid, gid); err == nil {
			err = os.Chmod(p, mode)
		}
		if err != nil {
			ln.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	px := &agentProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	px.wg.Add(1)
	go px.serve()
	stop := func() error {
		err := ln.Close()
		px.mu.Lock()
		for c := range px.conns {
			c.Close()
		}
		px.conns = nil
		px.mu.Unlock()
		px.wg.Wait()
		if rerr := os.RemoveAll(dir); err == nil {
			err = rerr
		}
		if err != nil && !isClosedErr(err) {
			return fmt.Errorf("stop ssh agent proxy: %w", err)
		}
		return nil
	}
	return p, stop, nil
}

func isClosedErr(err error) bool { return strings.Contains(err.Error(), "use of closed") }

func (px *agentProxy) serve() {
	defer px.wg.Done()
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return // closed by stop
		}
		if !px.track(c) {
			c.Close()
			return
		}
		px.wg.Add(1)
		go px.pass(c)
	}
}

// track records an open connection so that stop can close it; false once stop has begun.
func (px *agentProxy) track(c net.Conn) bool {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.conns == nil {
		return false
	}
	px.conns[c] = struct{}{}
	return true
}

func (px *agentProxy) untrack(c net.Conn) {
	px.mu.Lock()
	defer px.mu.Unlock()
	delete(px.conns, c)
	c.Close()
}

// pass copies between the step's connection and a new one to the agent until either side is
// done.
func (px *agentProxy) pass(c net.Conn) {
	defer px.wg.Done()
	defer px.untrack(c)
	up, err := net.Dial("unix", px.upstream)
	if err != nil {
		return
	}
	if !px.track(up) {
		up.Close()
		return
	}
	defer px.untrack(up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	// One way ended: close both, which ends the other copy too.
	c.Close()
	up.Close()
	<-done
}
