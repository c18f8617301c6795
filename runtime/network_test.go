package runtime

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// hostLoopbackListener listens on 127.0.0.1 on the host and counts the connections it gets.
func hostLoopbackListener(t *testing.T) (port int, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := make(chan int, 1)
	n <- 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			v := <-n
			n <- v + 1
			fmt.Fprint(c, "hello from the host\n")
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, func() int { v := <-n; n <- v; return v }
}

func TestRunNetworkNoneCannotReachHostLoopback(t *testing.T) {
	root := newTestRoot(t, true)
	port, accepted := hostLoopbackListener(t)
	script := fmt.Sprintf(`nc -w 2 127.0.0.1 %d </dev/null && echo CONNECTED || echo refused`, port)

	out, err := runShell(t, root, script, func(s *Spec) { s.Network = NetworkNone })
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(out, "CONNECTED") || strings.Contains(out, "hello from the host") || accepted() != 0 {
		t.Errorf("network none reached the host's loopback listener: %q", out)
	}

	// The same step on the host's network does reach it: the test really tests something.
	for _, network := range []string{"", "default", NetworkHost} {
		out, err = runShell(t, root, script, func(s *Spec) { s.Network = network })
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !strings.Contains(out, "hello from the host") {
			t.Errorf("network %q: host listener not reached: %q", network, out)
		}
	}
}

func TestRunNetworkNoneOnlyLoopbackUp(t *testing.T) {
	root := newTestRoot(t, true)
	// A server on the sandbox's own loopback answers the sandbox: lo is up.
	script := `ls /sys/class/net | tr '\n' ' '; echo; cat /sys/class/net/lo/flags
nc -l -p 7777 -e echo inside & sleep 0.2; nc -w 2 127.0.0.1 7777 </dev/null; wait`
	out, err := runShell(t, root, script, func(s *Spec) { s.Network = NetworkNone })
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != "lo " {
		t.Errorf("interfaces %q, want only lo", lines[0])
	}
	// IFF_UP (0x1) | IFF_LOOPBACK (0x8), and RUNNING shows only in operstate.
	if len(lines) < 2 || lines[1] != "0x9" {
		t.Errorf("lo flags %q, want 0x9 (up, loopback)", lines[1:])
	}
	if !strings.Contains(out, "inside\n") {
		t.Errorf("loopback inside the sandbox does not work: %q", out)
	}

	// The host's network shows the host's interfaces.
	hostIfs, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range hostIfs {
		want = append(want, e.Name())
	}
	out, err = runShell(t, root, `ls /sys/class/net`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.Fields(out); !slices.Equal(got, want) {
		t.Errorf("host network: interfaces %q, want the host's %q", got, want)
	}
}

func TestRunNetworkUnknown(t *testing.T) {
	root := newTestRoot(t, true)
	_, err := runShell(t, root, "true", func(s *Spec) { s.Network = "bridge" })
	if err == nil || !strings.Contains(err.Error(), `unknown network mode "bridge"`) {
		t.Errorf("err = %v, want an unknown network mode", err)
	}
}

func TestRunNetworkNoneEtcFiles(t *testing.T) {
	root := newTestRoot(t, true)
	out, err := runShell(t, root, `cat /etc/hosts; grep -c '^nameserver 127' /etc/resolv.conf`, func(s *Spec) {
		s.Network = NetworkNone
		s.Hostname = "box"
	})
	// grep -c exits 1 when it counts 0.
	if err != nil && !strings.HasSuffix(out, "0\n") {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.HasPrefix(out, "127.0.0.1\tlocalhost box\n") || !strings.HasSuffix(out, "0\n") {
		t.Errorf("output %q: want localhost and the host name in /etc/hosts, no loopback name server", out)
	}
}

func TestResolvConfFor(t *testing.T) {
	host := "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%eth0\noptions edns0\n"
	tests := []struct {
		isolated bool
		want     string
	}{
		{false, host},
		{true, "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\noptions edns0\n"},
	}
	for _, tt := range tests {
		if got := string(resolvConfFor([]byte(host), tt.isolated)); got != tt.want {
			t.Errorf("isolated %v:\n%s\nwant:\n%s", tt.isolated, got, tt.want)
		}
	}
}

// A network namespace costs little and leaves nothing: many in a row all come and go.
func TestRunNetworkNoneRepeated(t *testing.T) {
	root := newTestRoot(t, true)
	start := time.Now()
	for range 10 {
		if out, err := runShell(t, root, "true", func(s *Spec) { s.Network = NetworkNone }); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	t.Logf("10 steps with network none: %v", time.Since(start))
}
