package parser

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// seedDockerfiles adds every Dockerfile of the repository's testdata to a fuzz corpus.
func seedDockerfiles(f *testing.F) {
	paths, _ := filepath.Glob("../testdata/*/*/Dockerfile")
	more, _ := filepath.Glob("../testdata/*/Dockerfile")
	for _, p := range append(paths, more...) {
		// Large seeds (the 150-step chain) make the fuzzer's minimizing crawl; small ones cover
		// the same grammar.
		if b, err := os.ReadFile(p); err == nil && len(b) < 2048 {
			f.Add(b)
		}
	}
	f.Add([]byte("FROM scratch\nRUN <<EOF\necho hi\nEOF\n"))
	f.Add([]byte("# escape=`\nFROM scratch\nRUN echo `\n  hi\n"))
	f.Add([]byte("ARG A=${B:-x}\nFROM ${A}\nENV C=${A:+y} D=$A\n"))
}

// FuzzParse: no input makes parsing or word expansion panic, and every error names the file
// (and, where there is one, a line inside it).
func FuzzParse(f *testing.F) {
	seedDockerfiles(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		df, err := Parse("Dockerfile", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Path != "Dockerfile" {
				t.Fatalf("error without the Dockerfile's name: %v", err)
			}
			if lines := strings.Count(string(data), "\n") + 1; pe.Line < 0 || pe.Line > lines+1 {
				t.Fatalf("error at line %d of a %d-line file: %v", pe.Line, lines, err)
			}
			return
		}
		env := shell.EnvsFromSlice([]string{"A=1", "B=two words", "PATH=/bin"})
		lex := shell.NewLex(df.Escape)
		expand := func(word string) (string, error) {
			s, _, err := lex.ProcessWord(word, env)
			return s, err
		}
		for _, s := range df.Stages {
			_, _, _ = lex.ProcessWord(s.BaseName, env)
			for _, c := range s.Commands {
				if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
					_ = ex.Expand(expand)
				}
			}
		}
	})
}

// FuzzExpand: ARG/ENV expansion of any word with any environment never panics.
func FuzzExpand(f *testing.F) {
	for _, w := range []string{"$A", "${A:-b}", "${A:+c}", "${A?err}", "'$A'", `"$A"`, `\$A`, "${A%%x}", "${A#y}", "${A/x/y}", "${#A}"} {
		f.Add(w, "A=value")
	}
	f.Fuzz(func(t *testing.T, word, kvs string) {
		env := shell.EnvsFromSlice(strings.Split(kvs, "\n"))
		for _, esc := range []rune{'\\', '`'} {
			lex := shell.NewLex(esc)
			_, _, _ = lex.ProcessWord(word, env)
			_, _ = lex.ProcessWords(word, env)
		}
	})
}
