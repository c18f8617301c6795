package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"
)

// Network modes of a Spec.
const (
	NetworkHost = "host" // the host's network namespace ("" and "default" mean the same)
	NetworkNone = "none" // a network namespace of its own with only loopback up
)

// isolatedNetwork reports whether network asks for a network namespace of its own, and refuses
// modes kiln does not know.
func isolatedNetwork(network string) (bool, error) {
	switch network {
	case "", "default", NetworkHost:
		return false, nil
	case NetworkNone:
		return true, nil
	}
	return false, fmt.Errorf("unknown network mode %q: want host or none", network)
}

// loopbackUp brings up lo in the init's new network namespace (as `ip link set lo up` would),
// with the SIOCSIFFLAGS ioctl so that no tool is needed in the image.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up loopback: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: set flags: %w", err)
	}
	return nil
}

// resolvConfFor adapts the host's resolv.conf to a step's network. With the host's network it is
// kept as it is (a 127.x resolver is reachable). In a namespace of its own, loopback name
// servers would be the step's own loopback, where nothing answers: they are dropped, as Docker
// drops them, so that look-ups fail at once instead of timing out.
func resolvConfFor(host []byte, isolated bool) []byte {
	if !isolated {
		return host
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			// "nameserver fe80::1%eth0" carries a zone; ParseAddr accepts it.
			if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() {
				continue
			}
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}
