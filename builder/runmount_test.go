package builder

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/exporter"
)

// writeContext makes a build context of files (name: content).
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// exportRoot writes the image's file system to a new directory.
func exportRoot(t *testing.T, res *Result) string {
	t.Helper()
	root := t.TempDir()
	if err := exporter.Export(context.Background(), testStore, testSnaps, res.Manifest, exporter.Output{Type: "local", Dest: root}, nil); err != nil {
		t.Fatalf("export: %v", err)
	}
	return root
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// layersContain reports whether any of the image's layers, uncompressed, holds s.
func layersContain(t *testing.T, res *Result, s string) bool {
	t.Helper()
	for _, l := range res.Image.Layers {
		f, err := testStore.OpenBlob(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		r, err := decompress(l.MediaType, f)
		if err != nil {
			f.Close()
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

func TestRunCacheMountPersists(t *testing.T) {
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox:latest
ARG N
RUN --mount=type=cache,target=/c,id=persist-test echo "$N" >> /c/log && cat /c/log > /seen
`})
	var seen string
	for _, n := range []string{"first", "second"} {
		res, log, err := testBuild(t, Options{ContextDir: ctxDir, BuildArgs: map[string]string{"N": n}})
		if err != nil {
			t.Fatalf("build %s: %v\n%s", n, err, log)
		}
		root := exportRoot(t, res)
		seen = readFile(t, filepath.Join(root, "seen"))
		if _, err := os.Lstat(filepath.Join(root, "c")); err == nil {
			t.Errorf("build %s: the cache mount's target is in the image", n)
		}
		if layersContain(t, res, "c/log") {
			t.Errorf("build %s: the cache mount's files are in a layer", n)
		}
	}
	if seen != "first\nsecond\n" {
		t.Errorf("second build saw %q, want the first build's line kept", seen)
	}
	// The cache lives in the state directory.
	logs, _ := filepath.Glob(filepath.Join(testStore.CacheDir(), cacheMountsDir, "*", "0", "log"))
	found := false
	for _, l := range logs {
		if readFile(t, l) == "first\nsecond\n" {
			found = true
		}
	}
	if !found {
		t.Errorf("no cache directory with the log under %s (found %v)", testStore.CacheDir(), logs)
	}
}

// TestRunCacheMountSharing runs two builds at once over one cache: with sharing=locked their
// steps take turns; with private the second gets a slot of its own, so both run at once.
func TestRunCacheMountSharing(t *testing.T) {
	for _, sharing := range []string{"locked", "private"} {
		t.Run(sharing, func(t *testing.T) {
			id := "sharing-test-" + sharing
			// Each step holds /c/busy for a while; a step that finds it there saw the other one
			// in the same directory at the same time.
			ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox:latest
ARG N
RUN --mount=type=cache,target=/c,id=` + id + `,sharing=` + sharing + ` mkdir /c/busy && date +%s.%N > /start && sleep 1 && rmdir /c/busy && echo "$N" > /done # ` + testNonce() + `
`})
			var wg sync.WaitGroup
			errs := make([]error, 2)
			logs := make([]string, 2)
			start := time.Now()
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, logs[i], errs[i] = testBuild(t, Options{ContextDir: ctxDir, BuildArgs: map[string]string{"N": string(rune('a' + i))}})
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("build %d: %v\n%s", i, err, logs[i])
				}
			}
			slots, _ := filepath.Glob(filepath.Join(testStore.CacheDir(), cacheMountsDir, "*", "1"))
			switch sharing {
			case "locked":
				if elapsed < 2*time.Second {
					t.Errorf("two locked steps of 1s took %v: they overlapped", elapsed)
				}
			case "private":
				if len(slots) == 0 {
					t.Errorf("no second slot made for a private cache in use")
				}
			}
		})
	}
}

func TestRunSecretNotKept(t *testing.T) {
	const secret = "s3cr3t-VALUE-4242"
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	// The steps compare the secret with its hash: the Dockerfile must not hold it either.
	sum := fmt.Sprintf("%x", md5.Sum([]byte(secret)))
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox:latest
RUN --mount=type=secret,id=tok test "$(md5sum < /run/secrets/tok | cut -c1-32)" = "` + sum + `" && echo ok > /file-ok
RUN --mount=type=secret,id=tok,env=TOK test "$(printf %s "$TOK" | md5sum | cut -c1-32)" = "` + sum + `" && echo ok > /env-ok
`})
	opts := Options{ContextDir: ctxDir, Secrets: []string{"id=tok,src=" + secretFile}}
	res, log, err := testBuild(t, opts)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	root := exportRoot(t, res)
	if readFile(t, filepath.Join(root, "file-ok")) != "ok\n" || readFile(t, filepath.Join(root, "env-ok")) != "ok\n" {
		t.Errorf("the steps did not see the secret")
	}
	if layersContain(t, res, secret) {
		t.Errorf("a layer holds the secret")
	}
	if _, err := os.Lstat(filepath.Join(root, "run", "secrets")); err == nil {
		t.Errorf("the secret's mount point is in the image")
	}
	cfg, err := testStore.ReadBlob(res.Manifest.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cfg, []byte(secret)) {
		t.Errorf("the manifest holds the secret")
	}
	for _, h := range res.Image.Config.History {
		if strings.Contains(h.CreatedBy, secret) {
			t.Errorf("history holds the secret: %s", h.CreatedBy)
		}
	}
	for _, e := range res.Image.Config.Config.Env {
		if strings.Contains(e, secret) || strings.HasPrefix(e, "TOK=") {
			t.Errorf("the config's Env holds the secret: %s", e)
		}
	}
	// The secret's value is not part of the key: a new value reuses the steps, as in BuildKit.
	if err := os.WriteFile(secretFile, []byte("another value"), 0o600); err != nil {
		t.Fatal(err)
	}
	res2, log, err := testBuild(t, opts)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, log)
	}
	if res2.Cached != res2.Steps {
		t.Errorf("rebuild with another secret value: %d of %d steps cached, want all", res2.Cached, res2.Steps)
	}
}

func TestRunSecretErrors(t *testing.T) {
	tests := []struct {
		name    string
		df      string
		secrets []string
		want    string
	}{
		{"required missing", "RUN --mount=type=secret,id=x,required=true true", nil, "secret x: not found"},
		{"bad flag", "RUN --mount=type=secret,id=x true", []string{"id=x,bogus=1"}, `unexpected key "bogus"`},
		{"missing file", "RUN --mount=type=secret,id=x true", []string{"id=x,src=/nonexistent/kiln-secret"}, "failed to stat /nonexistent/kiln-secret"},
		{"no id", "RUN --mount=type=secret,id=x true", []string{"src=/etc/hostname"}, "secret missing ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM busybox:latest\n" + tt.df + "\n"})
			_, _, err := testBuild(t, Options{ContextDir: ctxDir, Secrets: tt.secrets, NoCache: true})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "Dockerfile:2:") {
				t.Errorf("error %v does not name the line", err)
			}
		})
	}
}

func TestRunSecurityInsecure(t *testing.T) {
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox:latest
RUN --security=insecure grep CapEff /proc/self/status > /insecure
RUN grep CapEff /proc/self/status > /sandbox
`})
	_, _, err := testBuild(t, Options{ContextDir: ctxDir})
	if err == nil || !strings.Contains(err.Error(), "security.insecure is not allowed") {
		t.Fatalf("without --allow: error %v, want security.insecure is not allowed", err)
	}
	res, log, err := testBuild(t, Options{ContextDir: ctxDir, AllowInsecure: true})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	root := exportRoot(t, res)
	ins, sb := readFile(t, filepath.Join(root, "insecure")), readFile(t, filepath.Join(root, "sandbox"))
	if ins == sb {
		t.Errorf("insecure and sandboxed steps have the same capabilities: %q", ins)
	}
}

// TestRunNetworkInKey: --network is part of a step's key, so a step run without a network is
// not taken for one run with it.
func TestRunNetworkInKey(t *testing.T) {
	ctxDir := writeContext(t, map[string]string{"Dockerfile": `FROM busybox:latest
RUN ip -o link | wc -l > /links # ` + testNonce() + `
`})
	res, log, err := testBuild(t, Options{ContextDir: ctxDir, Network: "none"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(exportRoot(t, res), "links"))); got != "1" {
		t.Errorf("--network none: %s links, want only lo", got)
	}
	res, log, err = testBuild(t, Options{ContextDir: ctxDir, Network: "host"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	if res.Cached != 0 {
		t.Errorf("--network host reused the --network none step")
	}
}

// TestRunSSH forwards a real ssh-agent: a static helper in the step asks it for its identities
// through the mounted socket, as ssh would.
func TestRunSSH(t *testing.T) {
	agentBin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Skip("no ssh-agent (apt-get install openssh-client)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain to build the agent client")
	}
	tmp := t.TempDir()
	sock := filepath.Join(tmp, "agent.sock")
	agent := exec.Command(agentBin, "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("ssh-agent made no socket")
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctxDir := writeContext(t, map[string]string{
		"Dockerfile": `FROM busybox:latest
RUN --mount=type=ssh --mount=type=bind,source=agentclient,target=/agentclient /agentclient > /default && stat -c '%u:%g %a' $SSH_AUTH_SOCK > /default-perm && echo $SSH_AUTH_SOCK > /default-sock
USER 1000
RUN --mount=type=ssh,id=other,target=/tmp/agent,uid=1000,mode=0600 --mount=type=bind,source=agentclient,target=/agentclient SSH_AUTH_SOCK=/tmp/agent /agentclient > /tmp/other
`,
		"client/main.go": agentClient,
	})
	build := exec.Command(goBin, "build", "-o", filepath.Join(ctxDir, "agentclient"), "./client/main.go")
	build.Dir = ctxDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent client: %v\n%s", err, out)
	}
	res, log, err := testBuild(t, Options{ContextDir: ctxDir, SSH: []string{"default=" + sock, "other=" + sock}})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log)
	}
	root := exportRoot(t, res)
	for f, want := range map[string]string{
		"default":      "identities answer: 0 keys\n",
		"default-perm": "0:0 600\n",
		"default-sock": "/run/buildkit/ssh_agent.0\n",
		"tmp/other":    "identities answer: 0 keys\n",
	} {
		if got := readFile(t, filepath.Join(root, f)); got != want {
			t.Errorf("/%s: %q, want %q", f, got, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "run", "buildkit")); err == nil {
		t.Errorf("the agent's mount point is in the image")
	}

	// A required agent that was not given is an error; an optional one is left out.
	ctxDir2 := writeContext(t, map[string]string{"Dockerfile": `FROM busybox:latest
RUN --mount=type=ssh,id=nope test ! -e /run/buildkit/ssh_agent.0 && echo absent > /optional
RUN --mount=type=ssh,id=nope,required true
`})
	_, _, err = testBuild(t, Options{ContextDir: ctxDir2})
	if err == nil || !strings.Contains(err.Error(), `no SSH key "nope" forwarded`) || !strings.Contains(err.Error(), "Dockerfile:3:") {
		t.Fatalf("error %v, want no SSH key \"nope\" forwarded at line 3", err)
	}
}

// agentClient asks the agent at $SSH_AUTH_SOCK for its identities (SSH_AGENTC_REQUEST_IDENTITIES)
// and prints the answer.
const agentClient = `package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	c, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := c.Write([]byte{0, 0, 0, 1, 11}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var n uint32
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(c, msg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if msg[0] != 12 {
		fmt.Printf("unexpected answer %d\n", msg[0])
		os.Exit(1)
	}
	fmt.Printf("identities answer: %d keys\n", binary.BigEndian.Uint32(msg[1:5]))
}
`
