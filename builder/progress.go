package builder

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints plain progress lines as BuildKit's plain mode does: "#N label", output lines
// prefixed "#N ", then "#N DONE 0.1s", "#N CACHED" or "#N ERROR: ...".
type progress struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w}
}

type stepProgress struct {
	p     *progress
	n     int
	start time.Time
}

func (p *progress) printf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, a...)
}

// start announces a step.
func (p *progress) start(label string) *stepProgress {
	p.mu.Lock()
	p.n++
	n := p.n
	p.mu.Unlock()
	p.printf("#%d %s\n", n, label)
	return &stepProgress{p: p, n: n, start: time.Now()}
}

// cached announces a step that did no work.
func (p *progress) cached(label string) {
	p.start(label).cached()
}

func (s *stepProgress) done() {
	s.p.printf("#%d DONE %.1fs\n", s.n, time.Since(s.start).Seconds())
}

func (s *stepProgress) cached() { s.p.printf("#%d CACHED\n", s.n) }

func (s *stepProgress) fail(err error) { s.p.printf("#%d ERROR: %v\n", s.n, err) }

// output is a writer for the step's process output, prefixing each line with the step number.
func (s *stepProgress) output() *lineWriter { return &lineWriter{s: s} }

type lineWriter struct {
	mu  sync.Mutex
	s   *stepProgress
	buf []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.s.p.printf("#%d %.3f %s\n", l.s.n, time.Since(l.s.start).Seconds(), l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	// A step that prints without newlines must not grow kiln's memory without bound.
	if len(l.buf) > 64<<10 {
		l.s.p.printf("#%d %.3f %s\n", l.s.n, time.Since(l.s.start).Seconds(), l.buf)
		l.buf = l.buf[:0]
	}
	return len(b), nil
}

// flush prints what is left without a final newline.
func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.s.p.printf("#%d %.3f %s\n", l.s.n, time.Since(l.s.start).Seconds(), l.buf)
		l.buf = nil
	}
}
