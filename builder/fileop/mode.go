package fileop

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrModeSyntax is wrapped by errors about a --chmod value that is neither
// octal nor a valid symbolic mode.
var ErrModeSyntax = errors.New("invalid syntax")

// ErrModeNumber is wrapped when a --chmod value starts with a digit but is
// not an octal number: BuildKit reports those with its octal error message.
var ErrModeNumber = errors.New("invalid octal mode")

// ModeSet is a symbolic mode as chmod(1) takes it ("u+x", "g=rx,o-w",
// "a+X", "g=u"), applied to each copied file with a umask of 0, as BuildKit
// applies --chmod=SYMBOLIC (BSD setmode semantics).
type ModeSet struct {
	text    string
	clauses []modeClause
}

type modeClause struct {
	ops []modeOp
}

type modeOp struct {
	who   uint32 // bits the operation may touch; 0 means "all" (no who letters)
	op    byte   // '+', '-' or '='
	bits  uint32 // permission bits named (before masking with who)
	condX bool   // 'X': execute only for directories or files executable by someone
	from  byte   // 'u', 'g' or 'o' to copy that class's current bits; 0 otherwise
}

const (
	bitsUser   = 0o4700 // set-user-ID and rwx for the owner
	bitsGroup  = 0o2070
	bitsOther  = 0o0007
	bitsSticky = 0o1000
	bitsAll    = bitsUser | bitsGroup | bitsOther // sticky only with 't'
)

// ParseModeSet parses a symbolic mode: comma-separated clauses of
// [ugoa]* followed by one or more actions, each an operator (+ - =) and
// either permission letters (r w x X s t) or one class letter (u g o).
func ParseModeSet(s string) (*ModeSet, error) {
	if s == "" {
		return nil, fmt.Errorf("mode %q: %w", s, ErrModeSyntax)
	}
	if s[0] >= '0' && s[0] <= '9' {
		return nil, fmt.Errorf("mode %q: %w", s, ErrModeNumber)
	}
	ms := &ModeSet{text: s}
	for _, part := range strings.Split(s, ",") {
		c, err := parseClause(part)
		if err != nil {
			return nil, fmt.Errorf("mode %q: %w", s, err)
		}
		ms.clauses = append(ms.clauses, c)
	}
	return ms, nil
}

func parseClause(s string) (modeClause, error) {
	var c modeClause
	var who uint32
	i := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case 'u':
			who |= bitsUser
		case 'g':
			who |= bitsGroup
		case 'o':
			who |= bitsOther
		case 'a':
			who |= bitsAll
		default:
			goto ops
		}
	}
ops:
	if i == len(s) {
		return c, ErrModeSyntax // who letters without an action
	}
	for i < len(s) {
		op := s[i]
		if op != '+' && op != '-' && op != '=' {
			return c, ErrModeSyntax
		}
		i++
		cur := modeOp{op: op, who: who}
		copied := false // a class letter already made this action's operation
		for ; i < len(s) && s[i] != '+' && s[i] != '-' && s[i] != '='; i++ {
			switch ch := s[i]; ch {
			case 'r':
				cur.bits |= 0o444
			case 'w':
				cur.bits |= 0o222
			case 'x':
				cur.bits |= 0o111
			case 'X':
				if op == '-' {
					cur.bits |= 0o111 // "-X" removes execute like "-x"
				} else {
					cur.condX = true
				}
			case 's':
				// Set-ID bits mean nothing for "other" alone.
				if cur.who == 0 || cur.who&^bitsOther != 0 {
					cur.bits |= 0o6000
				}
			case 't':
				// As in BSD setmode, 't' makes the sticky bit (and only it,
				// when no who letters were given) this operation's target.
				if cur.who == 0 || cur.who&^bitsOther != 0 {
					cur.who |= bitsSticky
					cur.bits |= bitsSticky
				}
			case 'u', 'g', 'o':
				// What was named so far is applied first, then the copy.
				c.ops = cur.flush(c.ops, false)
				c.ops = append(c.ops, modeOp{op: op, who: cur.who, from: ch})
				cur = modeOp{op: op, who: cur.who}
				copied = true
			default:
				return c, ErrModeSyntax
			}
		}
		// "o=" alone still clears; "u+" alone does nothing.
		c.ops = cur.flush(c.ops, op == '=' && !copied)
	}
	return c, nil
}

// flush appends the operations an action's letters make: the bits with the
// action's operator (an "=" clears even with no bits when force is set),
// then "X" as a conditional add, as BSD setmode orders them.
func (o modeOp) flush(ops []modeOp, force bool) []modeOp {
	if o.bits != 0 || force {
		ops = append(ops, modeOp{op: o.op, who: o.who, bits: o.bits})
	}
	if o.condX {
		ops = append(ops, modeOp{op: '+', who: o.who, condX: true})
	}
	return ops
}

// String is the mode as written.
func (ms *ModeSet) String() string { return ms.text }

// Apply returns m changed by the symbolic mode; the file type bits of m are
// kept, and decide what "X" does.
func (ms *ModeSet) Apply(m os.FileMode) os.FileMode {
	orig := toUnixBits(m)
	cur := orig
	for _, c := range ms.clauses {
		for _, op := range c.ops {
			who := op.who
			if who == 0 {
				who = bitsAll
			}
			if op.from != 0 {
				cur = applyCopy(cur, who, op)
				continue
			}
			bits := op.bits & who
			if op.condX && (m.IsDir() || orig&0o111 != 0) {
				bits |= 0o111 & who
			}
			switch op.op {
			case '+':
				cur |= bits
			case '-':
				cur &^= bits
			case '=':
				cur = cur&^who | bits
			}
		}
	}
	return m&^(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) | FromUnixMode(cur)
}

// applyCopy handles "g=u", "o+g" and the like: the source class's current
// rwx bits are set, cleared or assigned in each class of who.
func applyCopy(cur, who uint32, op modeOp) uint32 {
	var v uint32
	switch op.from {
	case 'u':
		v = cur >> 6 & 7
	case 'g':
		v = cur >> 3 & 7
	case 'o':
		v = cur & 7
	}
	for _, sh := range []uint32{6, 3, 0} {
		if who&(7<<sh) == 0 {
			continue
		}
		switch op.op {
		case '+':
			cur |= v << sh
		case '-':
			cur &^= v << sh
		case '=':
			cur = cur&^(7<<sh) | v<<sh
		}
	}
	return cur
}

func toUnixBits(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// FromUnixMode turns permission bits as chmod(2) takes them (with setuid 04000, setgid 02000
// and sticky 01000) into an os.FileMode.
func FromUnixMode(u uint32) os.FileMode {
	m := os.FileMode(u & 0o777)
	if u&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if u&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if u&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}
