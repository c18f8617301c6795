package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuPeriod is the CFS period of a --cpus quota, in microseconds (Docker's).
const cpuPeriod = 100000

// minMemory is the smallest memory limit accepted (Docker's): below it even the sandbox's init
// and a shell do not fit.
const minMemory = 6 << 20

// check refuses limits no cgroup can take.
func (l Limits) check() error {
	switch {
	case l.MemoryBytes < 0:
		return fmt.Errorf("invalid memory limit %d", l.MemoryBytes)
	case l.MemoryBytes > 0 && l.MemoryBytes < minMemory:
		return fmt.Errorf("memory limit %d bytes is below the minimum of 6MiB", l.MemoryBytes)
	case l.CPUs < 0 || math.IsNaN(l.CPUs) || math.IsInf(l.CPUs, 0):
		return fmt.Errorf("invalid CPU limit %v", l.CPUs)
	case l.CPUs > 0 && l.cpuQuota() < 1000:
		return fmt.Errorf("CPU limit %v is below the minimum of 0.01", l.CPUs)
	case l.Pids < 0:
		return fmt.Errorf("invalid pids limit %d", l.Pids)
	}
	return nil
}

// controllers lists the cgroup controllers l needs.
func (l Limits) controllers() []string {
	var c []string
	if l.MemoryBytes > 0 {
		c = append(c, "memory")
	}
	if l.CPUs > 0 || l.CPUShares > 0 {
		c = append(c, "cpu")
	}
	if l.Pids > 0 {
		c = append(c, "pids")
	}
	return c
}

// cpuQuota is the CFS quota of --cpus per cpuPeriod, in microseconds.
func (l Limits) cpuQuota() int64 { return int64(math.Round(l.CPUs * cpuPeriod)) }

// clampShares keeps cpu shares within what cgroup v1 accepts.
func clampShares(shares uint64) uint64 { return min(max(shares, 2), 262144) }

// sharesToWeight converts v1 cpu shares [2, 262144] to a v2 cpu.weight [1, 10000] as runc and
// crun do, so that the default 1024 shares map to about the default weight 100 (39).
func sharesToWeight(shares uint64) uint64 {
	return 1 + (clampShares(shares)-2)*9999/262142
}

// writeCgroupFiles writes each {file, value} into dir.
func writeCgroupFiles(dir string, files [][2]string) error {
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0); err != nil {
			return fmt.Errorf("set %s of cgroup %s to %s: %w", f[0], dir, f[1], err)
		}
	}
	return nil
}

// readKeyedCount reads "key N" from a flat keyed cgroup file; 0 when absent.
func readKeyedCount(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// IsOutOfMemory reports whether err is a step that failed because the kernel's OOM killer
// killed one of its processes at the step's memory limit.
func IsOutOfMemory(err error) bool {
	var ee *ExitError
	return errors.As(err, &ee) && ee.OOMKilled
}
