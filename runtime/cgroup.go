package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupParent is the cgroup under which every step's cgroup is made, in each hierarchy used.
// It is shared by all kiln processes and never removed.
const cgroupParent = "kiln"

// cgroupEmptyTimeout bounds how long killing a cgroup may take before it is reported as stuck.
const cgroupEmptyTimeout = 10 * time.Second

// cgroup is one step's control group. Every process of the step is in it, so killing the
// cgroup kills the step, whatever it forked, and its limits bound the step as a whole. Limits
// are written per version: v2 into the one directory, v1 into each controller's hierarchy.
type cgroup interface {
	// paths lists the cgroup's directories (one for v2, one per hierarchy for v1).
	paths() []string
	// prepare makes attr start the child inside the cgroup, if this version can; it reports
	// whether it did. If not, the caller must add the child's pid before the child forks.
	prepare(attr *syscall.SysProcAttr) bool
	// add moves pid into the cgroup.
	add(pid int) error
	// kill sends SIGKILL to every process in the cgroup once, without waiting.
	kill() error
	// oomKilled reports whether the kernel's OOM killer killed a process of the cgroup.
	oomKilled() bool
	// destroy kills every process in the cgroup until it is empty, then removes it.
	destroy() error
}

// newCgroup makes the cgroup for step id, with limits l, in the best hierarchy the machine has:
// cgroup v2 when a cgroup2 file system is mounted (pure v2 at /sys/fs/cgroup, hybrid at
// /sys/fs/cgroup/unified) and offers the controllers l needs, else the v1 hierarchies (pids,
// and memory and cpu when limited). On a hybrid machine the controllers are usually all v1's.
func newCgroup(id string, l Limits) (cgroup, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	if dir := cgroup2Mount(); dir != "" {
		missing := missingV2Controllers(dir, l.controllers())
		if len(missing) == 0 {
			return newCgroupV2(dir, id, l)
		}
		if !haveV1(l.controllers()) {
			return nil, fmt.Errorf("cgroup v2 at %s offers no %s controller and there is no cgroup v1 one", dir, strings.Join(missing, ", "))
		}
	}
	return newCgroupV1(id, l)
}

// haveV1 reports whether each controller has a v1 hierarchy at /sys/fs/cgroup/<name>.
func haveV1(controllers []string) bool {
	for _, c := range controllers {
		var st unix.Statfs_t
		if unix.Statfs(filepath.Join("/sys/fs/cgroup", c), &st) != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
			return false
		}
	}
	return true
}

// missingV2Controllers lists those of want the cgroup2 hierarchy at dir does not offer.
func missingV2Controllers(dir string, want []string) []string {
	if len(want) == 0 {
		return nil
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	have := strings.Fields(string(b))
	var missing []string
	for _, c := range want {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	return missing
}

// cgroup2Mount returns where a cgroup2 file system is mounted, or "".
func cgroup2Mount() string {
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir
		}
	}
	return ""
}

// checkCgroupName refuses ids that are not a single safe path component.
func checkCgroupName(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 200 {
		return fmt.Errorf("invalid step id %q: want 1-200 characters of [A-Za-z0-9._-]", id)
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("invalid step id %q: want 1-200 characters of [A-Za-z0-9._-]", id)
		}
	}
	return nil
}

// makeCgroupDir creates hierarchy/kiln/id. An existing one is left over from a kiln that died
// (ids are unique among running steps), so it is emptied and made anew.
func makeCgroupDir(hierarchy, id string, stale func(dir string) error) (string, error) {
	parent, err := makeCgroupParent(hierarchy)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(parent, id)
	err = os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		if err := stale(dir); err != nil {
			return "", fmt.Errorf("remove stale cgroup %s: %w", dir, err)
		}
		err = os.Mkdir(dir, 0o755)
	}
	if err != nil {
		return "", fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	return dir, nil
}

// makeCgroupParent creates hierarchy/kiln if it is missing.
func makeCgroupParent(hierarchy string) (string, error) {
	parent := filepath.Join(hierarchy, cgroupParent)
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create cgroup %s: %w", parent, err)
	}
	return parent, nil
}

// readPids reads a cgroup.procs file.
func readPids(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killPids sends SIGKILL to every pid in dir's cgroup.procs and reports how many there were.
func killPids(dir string) (int, error) {
	pids, err := readPids(dir)
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		// ESRCH: it died meanwhile, which is what we want.
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
			return len(pids), fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	return len(pids), nil
}

// removeCgroupDir removes an empty cgroup dir, retrying while the kernel still counts exiting
// processes in it (EBUSY).
func removeCgroupDir(dir string, deadline time.Time) error {
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(delay)
	}
}

// cgroupV2 is a cgroup in a cgroup2 hierarchy: the child is born in it (CLONE_INTO_CGROUP) and
// cgroup.kill kills it as a whole.
type cgroupV2 struct {
	dir string
	fd  int // open directory, for SysProcAttr.CgroupFD
}

func newCgroupV2(hierarchy, id string, l Limits) (*cgroupV2, error) {
	if err := checkCgroupName(id); err != nil {
		return nil, err
	}
	if ctls := l.controllers(); len(ctls) > 0 {
		parent, err := makeCgroupParent(hierarchy)
		if err != nil {
			return nil, err
		}
		// A controller reaches a cgroup only when each ancestor enables it for its children.
		for _, d := range []string{hierarchy, parent} {
			if err := enableV2Controllers(d, ctls); err != nil {
				return nil, err
			}
		}
	}
	dir, err := makeCgroupDir(hierarchy, id, func(dir string) error {
		return (&cgroupV2{dir: dir, fd: -1}).destroy()
	})
	if err != nil {
		return nil, err
	}
	c := &cgroupV2{dir: dir, fd: -1}
	if err := c.setLimits(l); err != nil {
		_ = c.destroy()
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = c.destroy()
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	c.fd = fd
	return c, nil
}

// enableV2Controllers writes +ctl into dir's cgroup.subtree_control for each ctl not yet there.
func enableV2Controllers(dir string, ctls []string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("read cgroup %s: %w", dir, err)
	}
	on := strings.Fields(string(b))
	for _, c := range ctls {
		if slices.Contains(on, c) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			return fmt.Errorf("enable the %s controller in cgroup %s: %w", c, dir, err)
		}
	}
	return nil
}

func (c *cgroupV2) setLimits(l Limits) error {
	var files [][2]string
	if l.MemoryBytes > 0 {
		files = append(files, [2]string{"memory.max", strconv.FormatInt(l.MemoryBytes, 10)})
		// No swap: a step over its memory is killed, as it would be on a machine without swap.
		if _, err := os.Stat(filepath.Join(c.dir, "memory.swap.max")); err == nil {
			files = append(files, [2]string{"memory.swap.max", "0"})
		}
	}
	if l.CPUs > 0 {
		files = append(files, [2]string{"cpu.max", fmt.Sprintf("%d %d", l.cpuQuota(), cpuPeriod)})
	}
	if l.CPUShares > 0 {
		files = append(files, [2]string{"cpu.weight", strconv.FormatUint(sharesToWeight(l.CPUShares), 10)})
	}
	if l.Pids > 0 {
		files = append(files, [2]string{"pids.max", strconv.FormatInt(l.Pids, 10)})
	}
	return writeCgroupFiles(c.dir, files)
}

func (c *cgroupV2) oomKilled() bool {
	return readKeyedCount(filepath.Join(c.dir, "memory.events"), "oom_kill") > 0
}

func (c *cgroupV2) paths() []string { return []string{c.dir} }

func (c *cgroupV2) prepare(attr *syscall.SysProcAttr) bool {
	attr.UseCgroupFD = true
	attr.CgroupFD = c.fd
	return true
}

func (c *cgroupV2) add(pid int) error {
	if err := os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("add %d to cgroup %s: %w", pid, c.dir, err)
	}
	return nil
}

func (c *cgroupV2) kill() error {
	err := os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0)
	if errors.Is(err, fs.ErrNotExist) {
		// cgroup.kill is Linux 5.14+; before that, kill the processes one by one.
		_, err = killPids(c.dir)
	}
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", c.dir, err)
	}
	return nil
}

// populated reads cgroup.events: whether any process is left in the cgroup or below it.
func (c *cgroupV2) populated() (bool, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	return bytes.Contains(b, []byte("populated 1")), nil
}

func (c *cgroupV2) destroy() error {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	deadline := time.Now().Add(cgroupEmptyTimeout)
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		busy, err := c.populated()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read cgroup %s: %w", c.dir, err)
		}
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes still alive after %v", c.dir, cgroupEmptyTimeout)
		}
		if err := c.kill(); err != nil {
			return err
		}
		time.Sleep(delay)
	}
	return removeCgroupDir(c.dir, deadline)
}

// v1Controllers are the v1 hierarchies a step's cgroup is made in for limits l. pids, always,
// finds and kills every process; memory and cpu join when limited.
func v1Controllers(l Limits) []string {
	ctls := []string{"pids"}
	for _, c := range l.controllers() {
		if c != "pids" {
			ctls = append(ctls, c)
		}
	}
	return ctls
}

// cgroupV1 is a cgroup in the v1 hierarchies: the parent writes the child's pid into it before
// letting the child go on, and killing is SIGKILL to each pid until none is left.
type cgroupV1 struct {
	dirs []string
}

func newCgroupV1(id string, l Limits) (*cgroupV1, error) {
	if err := checkCgroupName(id); err != nil {
		return nil, err
	}
	c := &cgroupV1{}
	for _, ctl := range v1Controllers(l) {
		hierarchy := filepath.Join("/sys/fs/cgroup", ctl)
		var st unix.Statfs_t
		if err := unix.Statfs(hierarchy, &st); err != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
			_ = c.destroy()
			return nil, fmt.Errorf("no cgroup v2 and no cgroup v1 %s hierarchy at %s", ctl, hierarchy)
		}
		dir, err := makeCgroupDir(hierarchy, id, func(dir string) error {
			return (&cgroupV1{dirs: []string{dir}}).destroy()
		})
		if err != nil {
			_ = c.destroy()
			return nil, err
		}
		c.dirs = append(c.dirs, dir)
	}
	if err := c.setLimits(l); err != nil {
		_ = c.destroy()
		return nil, err
	}
	return c, nil
}

// dir returns the cgroup's directory in the hierarchy of controller ctl, or "".
func (c *cgroupV1) dir(ctl string) string {
	for _, d := range c.dirs {
		if filepath.Base(filepath.Dir(filepath.Dir(d))) == ctl {
			return d
		}
	}
	return ""
}

func (c *cgroupV1) setLimits(l Limits) error {
	if l.MemoryBytes > 0 {
		d := c.dir("memory")
		files := [][2]string{{"memory.limit_in_bytes", strconv.FormatInt(l.MemoryBytes, 10)}}
		// Memory plus swap no more than memory: no swap (memsw exists only with swap accounting).
		if _, err := os.Stat(filepath.Join(d, "memory.memsw.limit_in_bytes")); err == nil {
			files = append(files, [2]string{"memory.memsw.limit_in_bytes", strconv.FormatInt(l.MemoryBytes, 10)})
		}
		if err := writeCgroupFiles(d, files); err != nil {
			return err
		}
	}
	var cpu [][2]string
	if l.CPUs > 0 {
		cpu = append(cpu, [2]string{"cpu.cfs_period_us", strconv.Itoa(cpuPeriod)},
			[2]string{"cpu.cfs_quota_us", strconv.FormatInt(l.cpuQuota(), 10)})
	}
	if l.CPUShares > 0 {
		cpu = append(cpu, [2]string{"cpu.shares", strconv.FormatUint(clampShares(l.CPUShares), 10)})
	}
	if err := writeCgroupFiles(c.dir("cpu"), cpu); err != nil {
		return err
	}
	if l.Pids > 0 {
		return writeCgroupFiles(c.dir("pids"), [][2]string{{"pids.max", strconv.FormatInt(l.Pids, 10)}})
	}
	return nil
}

func (c *cgroupV1) oomKilled() bool {
	d := c.dir("memory")
	return d != "" && readKeyedCount(filepath.Join(d, "memory.oom_control"), "oom_kill") > 0
}

func (c *cgroupV1) paths() []string { return c.dirs }

func (c *cgroupV1) prepare(*syscall.SysProcAttr) bool { return false }

func (c *cgroupV1) add(pid int) error {
	for _, dir := range c.dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("add %d to cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

func (c *cgroupV1) kill() error {
	d := c.dir("pids")
	if d == "" {
		return nil
	}
	if _, err := killPids(d); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", d, err)
	}
	return nil
}

func (c *cgroupV1) destroy() error {
	deadline := time.Now().Add(cgroupEmptyTimeout)
	var errs []error
	for _, dir := range c.dirs {
		// Repeat: a process may fork between reading cgroup.procs and the kill.
		for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
			n, err := killPids(dir)
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("kill cgroup %s: %w", dir, err))
				break
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("cgroup %s: processes still alive after %v", dir, cgroupEmptyTimeout))
				break
			}
			time.Sleep(delay)
		}
		errs = append(errs, removeCgroupDir(dir, deadline))
	}
	c.dirs = nil
	return errors.Join(errs...)
}
