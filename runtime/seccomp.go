package runtime

import (
	"encoding/binary"
	"fmt"
	goruntime "runtime"
	"slices"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	dockerseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The seccomp filter of a step is Docker's default profile (github.com/moby/profiles/seccomp),
// resolved for the step's capabilities as dockerd resolves it, compiled here into classic BPF.
// Syscalls are found by a binary search on their number, so a step's syscalls pay about ten
// comparisons, not one per rule of the profile.

// seccompData offsets (struct seccomp_data).
const (
	seccompNrOff   = 0
	seccompArchOff = 4
	seccompArgsOff = 16
)

// x32SyscallBit marks a syscall of the x32 ABI on x86_64; the profile does not allow that ABI.
const x32SyscallBit = 0x40000000

// archSection is one calling convention the filter checks: its audit arch and syscall table.
type archSection struct {
	info    *arch.Info
	specArg specs.Arch
}

// filterArches are the native calling convention and the compat one the profile lists for it.
func filterArches() ([]archSection, error) {
	switch goruntime.GOARCH {
	case "amd64":
		return []archSection{{arch.X86_64, specs.ArchX86_64}, {arch.I386, specs.ArchX86}}, nil
	case "arm64":
		return []archSection{{arch.AARCH64, specs.ArchAARCH64}, {arch.ARM, specs.ArchARM}}, nil
	}
	return nil, fmt.Errorf("seccomp: no syscall table for %s", goruntime.GOARCH)
}

// DefaultSeccompProgram returns Docker's default seccomp profile, resolved for a process whose
// bounding set is caps (a bit per capability), as a BPF program ready for seccomp(2).
func DefaultSeccompProgram(caps uint64) ([]unix.SockFilter, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: capNames(caps)}}}
	prof, err := dockerseccomp.GetDefaultProfile(rs)
	if err != nil {
		return nil, fmt.Errorf("seccomp: default profile: %w", err)
	}
	return compileSeccomp(prof)
}

// seccompRule is one rule of a syscall: its action when every argument condition holds.
type seccompRule struct {
	action uint32
	args   []specs.LinuxSeccompArg
}

// compileSeccomp compiles a resolved profile. Rules of a syscall are tried in profile order,
// those with conditions before an unconditional one (the more specific rule wins, as with
// libseccomp); conditions of one rule are ANDed, except that repeated conditions on the same
// argument make one rule each (ORed), as runc reads them.
func compileSeccomp(prof *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return nil, fmt.Errorf("seccomp: big-endian machines are not supported")
	}
	def, err := seccompAction(prof.DefaultAction, prof.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	sections, err := filterArches()
	if err != nil {
		return nil, err
	}
	sections = slices.DeleteFunc(sections, func(s archSection) bool {
		return len(prof.Architectures) > 0 && !slices.Contains(prof.Architectures, s.specArg)
	})
	if len(sections) == 0 {
		return nil, fmt.Errorf("seccomp: the profile lists none of this machine's architectures")
	}

	var a bpfAsm
	a.ld(seccompArchOff)
	labels := make([]int, len(sections))
	for i, s := range sections {
		labels[i] = a.newLabel()
		a.ifGoto(unix.BPF_JEQ, uint32(s.info.ID), labels[i])
	}
	a.ret(unix.SECCOMP_RET_KILL_PROCESS) // a calling convention the filter does not know
	for i, s := range sections {
		a.bind(labels[i])
		rules, err := syscallRules(prof, s.info)
		if err != nil {
			return nil, err
		}
		a.ld(seccompNrOff)
		if s.info.ID == arch.X86_64.ID {
			x32 := a.newLabel()
			a.ifGoto(unix.BPF_JGE, x32SyscallBit, x32)
			a.section(rules, def)
			a.bind(x32)
			a.ret(def)
			continue
		}
		a.section(rules, def)
	}
	return a.assemble()
}

// syscallRules maps each syscall number of one calling convention to its rules. Names the
// convention lacks are skipped: the profile lists every architecture's syscalls.
func syscallRules(prof *specs.LinuxSeccomp, info *arch.Info) (map[uint32][]seccompRule, error) {
	rules := map[uint32][]seccompRule{}
	for _, sc := range prof.Syscalls {
		act, err := seccompAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("seccomp: %v: %w", sc.Names, err)
		}
		for _, arg := range sc.Args {
			if arg.Index > 5 {
				return nil, fmt.Errorf("seccomp: %v: argument index %d", sc.Names, arg.Index)
			}
			switch arg.Op {
			case specs.OpEqualTo, specs.OpNotEqual, specs.OpMaskedEqual, specs.OpGreaterThan,
				specs.OpGreaterEqual, specs.OpLessThan, specs.OpLessEqual:
			default:
				return nil, fmt.Errorf("seccomp: %v: unknown operator %q", sc.Names, arg.Op)
			}
		}
		var alts [][]specs.LinuxSeccompArg
		if repeatsIndex(sc.Args) {
			for _, arg := range sc.Args {
				alts = append(alts, []specs.LinuxSeccompArg{arg})
			}
		} else {
			alts = [][]specs.LinuxSeccompArg{sc.Args}
		}
		for _, name := range sc.Names {
			nr, ok := info.SyscallNames[name]
			if !ok {
				continue
			}
			for _, args := range alts {
				rules[uint32(nr)] = append(rules[uint32(nr)], seccompRule{action: act, args: args})
			}
		}
	}
	return rules, nil
}

func repeatsIndex(args []specs.LinuxSeccompArg) bool {
	var seen [6]bool
	for _, a := range args {
		if seen[a.Index] {
			return true
		}
		seen[a.Index] = true
	}
	return false
}

// seccompAction is the filter's return value for an OCI action.
func seccompAction(act specs.LinuxSeccompAction, errno *uint) (uint32, error) {
	data := uint32(unix.EPERM)
	if errno != nil {
		data = uint32(*errno)
	}
	data &= unix.SECCOMP_RET_DATA
	switch act {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | data, nil
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	}
	return 0, fmt.Errorf("unsupported action %q", act)
}

// bpfAsm assembles classic BPF with forward labels. A conditional jump only ever skips one
// instruction, an unconditional BPF_JA (32-bit offset) reaches the label, so no program is too
// long for its jumps.
type bpfAsm struct {
	prog   []unix.SockFilter
	labels []int // label -> pc, -1 while unbound
	fixups []struct{ pc, label int }
}

func (a *bpfAsm) newLabel() int {
	a.labels = append(a.labels, -1)
	return len(a.labels) - 1
}

func (a *bpfAsm) bind(l int) { a.labels[l] = len(a.prog) }

func (a *bpfAsm) emit(code uint16, jt, jf uint8, k uint32) {
	a.prog = append(a.prog, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
}

// ld loads the 32-bit word at off of struct seccomp_data.
func (a *bpfAsm) ld(off uint32) { a.emit(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0, 0, off) }

func (a *bpfAsm) and(k uint32) { a.emit(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0, 0, k) }

func (a *bpfAsm) ret(k uint32) { a.emit(unix.BPF_RET|unix.BPF_K, 0, 0, k) }

func (a *bpfAsm) jump(l int) {
	a.fixups = append(a.fixups, struct{ pc, label int }{len(a.prog), l})
	a.emit(unix.BPF_JMP|unix.BPF_JA, 0, 0, 0)
}

// ifGoto jumps to l when "A op k" holds.
func (a *bpfAsm) ifGoto(op uint16, k uint32, l int) {
	a.emit(unix.BPF_JMP|op|unix.BPF_K, 0, 1, k)
	a.jump(l)
}

// unlessGoto jumps to l when "A op k" does not hold.
func (a *bpfAsm) unlessGoto(op uint16, k uint32, l int) {
	a.emit(unix.BPF_JMP|op|unix.BPF_K, 1, 0, k)
	a.jump(l)
}

// section emits the search for the syscall number in A among rules, and the rule blocks.
func (a *bpfAsm) section(rules map[uint32][]seccompRule, def uint32) {
	nrs := make([]uint32, 0, len(rules))
	for nr := range rules {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)
	blocks := map[uint32]int{}
	a.tree(nrs, rules, blocks, def)
	for _, nr := range nrs {
		l, ok := blocks[nr]
		if !ok {
			continue
		}
		a.bind(l)
		a.ruleBlock(rules[nr], def)
	}
}

// tree searches nrs (sorted) for A; a syscall with one unconditional rule returns at once, one
// with conditions jumps to its block (recorded in blocks).
func (a *bpfAsm) tree(nrs []uint32, rules map[uint32][]seccompRule, blocks map[uint32]int, def uint32) {
	if len(nrs) > 4 {
		mid := len(nrs) / 2
		upper := a.newLabel()
		a.ifGoto(unix.BPF_JGE, nrs[mid], upper)
		a.tree(nrs[:mid], rules, blocks, def)
		a.bind(upper)
		a.tree(nrs[mid:], rules, blocks, def)
		return
	}
	for _, nr := range nrs {
		rs := rules[nr]
		if len(rs) == 1 && len(rs[0].args) == 0 {
			a.emit(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, 1, nr)
			a.ret(rs[0].action)
			continue
		}
		l := a.newLabel()
		blocks[nr] = l
		a.ifGoto(unix.BPF_JEQ, nr, l)
	}
	a.ret(def)
}

// ruleBlock tries a syscall's conditional rules in order, then its unconditional one.
func (a *bpfAsm) ruleBlock(rs []seccompRule, def uint32) {
	final := def
	haveFinal := false
	for _, r := range rs {
		if len(r.args) == 0 {
			if !haveFinal {
				final, haveFinal = r.action, true
			}
			continue
		}
		next := a.newLabel()
		for _, arg := range r.args {
			a.argCheck(arg, next)
		}
		a.ret(r.action)
		a.bind(next)
	}
	a.ret(final)
}

// argCheck jumps to fail unless the 64-bit argument satisfies arg (little-endian halves).
func (a *bpfAsm) argCheck(arg specs.LinuxSeccompArg, fail int) {
	lo := seccompArgsOff + 8*uint32(arg.Index)
	hi := lo + 4
	vhi, vlo := uint32(arg.Value>>32), uint32(arg.Value)
	ok := a.newLabel()
	switch arg.Op {
	case specs.OpEqualTo:
		a.ld(hi)
		a.unlessGoto(unix.BPF_JEQ, vhi, fail)
		a.ld(lo)
		a.unlessGoto(unix.BPF_JEQ, vlo, fail)
	case specs.OpNotEqual:
		a.ld(hi)
		a.unlessGoto(unix.BPF_JEQ, vhi, ok)
		a.ld(lo)
		a.ifGoto(unix.BPF_JEQ, vlo, fail)
	case specs.OpMaskedEqual: // (arg & Value) == ValueTwo
		a.ld(hi)
		a.and(vhi)
		a.unlessGoto(unix.BPF_JEQ, uint32(arg.ValueTwo>>32), fail)
		a.ld(lo)
		a.and(vlo)
		a.unlessGoto(unix.BPF_JEQ, uint32(arg.ValueTwo), fail)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		a.ld(hi)
		a.ifGoto(unix.BPF_JGT, vhi, ok)
		a.unlessGoto(unix.BPF_JEQ, vhi, fail)
		a.ld(lo)
		op := uint16(unix.BPF_JGT)
		if arg.Op == specs.OpGreaterEqual {
			op = unix.BPF_JGE
		}
		a.unlessGoto(op, vlo, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		a.ld(hi)
		a.unlessGoto(unix.BPF_JGE, vhi, ok) // hi < vhi
		a.unlessGoto(unix.BPF_JEQ, vhi, fail)
		a.ld(lo)
		if arg.Op == specs.OpLessThan {
			a.ifGoto(unix.BPF_JGE, vlo, fail)
		} else {
			a.ifGoto(unix.BPF_JGT, vlo, fail)
		}
	}
	a.bind(ok)
}

// assemble resolves the jumps.
func (a *bpfAsm) assemble() ([]unix.SockFilter, error) {
	for _, f := range a.fixups {
		to := a.labels[f.label]
		if to <= f.pc {
			return nil, fmt.Errorf("seccomp: jump from %d to unbound or earlier label", f.pc)
		}
		a.prog[f.pc].K = uint32(to - f.pc - 1)
	}
	if len(a.prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: filter of %d instructions is over the kernel's %d", len(a.prog), unix.BPF_MAXINSNS)
	}
	return a.prog, nil
}

// seccompBytes and seccompFromBytes carry a program through the init's JSON config.
func seccompBytes(prog []unix.SockFilter) []byte {
	if len(prog) == 0 {
		return nil
	}
	return slices.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0]))))
}

func seccompFromBytes(b []byte) []unix.SockFilter {
	n := len(b) / int(unsafe.Sizeof(unix.SockFilter{}))
	if n == 0 {
		return nil
	}
	prog := make([]unix.SockFilter, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(b)), b)
	return prog
}

// loadSeccomp installs prog on the calling thread (and so on what it forks). The caller holds
// CAP_SYS_ADMIN or has set no_new_privs.
func loadSeccomp(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("load seccomp filter: %w", errno)
	}
	return nil
}
