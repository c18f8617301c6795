package builder

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"kiln/parser"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// parseRun parses a one-stage Dockerfile and returns its first RUN.
func parseRun(t *testing.T, df string) *instructions.RunCommand {
	t.Helper()
	d, err := parser.Parse("Dockerfile", []byte(df))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Stages[0].Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			return r
		}
	}
	t.Fatal("no RUN")
	return nil
}

func TestHeredocRun(t *testing.T) {
	tests := []struct {
		name    string
		df      string
		args    []string
		script  *heredocScript
		summary string
	}{
		{
			name: "plain", df: "FROM scratch\nRUN echo hi\n",
			args: []string{"echo hi"},
		},
		{
			name: "script", df: "FROM scratch\nRUN <<EOF\necho a\necho $HOME\nEOF\n",
			args: []string{"echo a\necho $HOME\n"}, summary: " (echo a...)",
		},
		{
			name: "chomp", df: "FROM scratch\nRUN <<-EOF\n\techo a\n\t\techo b\nEOF\n",
			args: []string{"echo a\necho b\n"}, summary: " (echo a...)",
		},
		{
			name: "quoted delimiter", df: "FROM scratch\nRUN <<'EOF'\necho $HOME\nEOF\n",
			args: []string{"echo $HOME\n"}, summary: " (echo $HOME)",
		},
		{
			name: "shebang", df: "FROM scratch\nRUN <<PY\n#!/usr/bin/python3\nprint(1)\nPY\n",
			args:    []string{"/dev/pipes/PY"},
			script:  &heredocScript{Name: "PY", Data: "#!/usr/bin/python3\nprint(1)\n"},
			summary: " (#!/usr/bin/python3...)",
		},
		{
			// The shell reads these heredocs itself: the instruction is put back together.
			name: "several", df: "FROM scratch\nRUN cat <<A >/a && cat <<\"B\" >/b\none $X\nA\ntwo $X\nB\n",
			args: []string{"cat <<A >/a && cat <<\"B\" >/b\none $X\nA\ntwo $X\nB"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hd, err := parseHeredocRun(parseRun(t, tt.df))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(hd.args, tt.args) {
				t.Errorf("args %q, want %q", hd.args, tt.args)
			}
			if !reflect.DeepEqual(hd.script, tt.script) {
				t.Errorf("script %+v, want %+v", hd.script, tt.script)
			}
			if hd.summary != tt.summary {
				t.Errorf("summary %q, want %q", hd.summary, tt.summary)
			}
		})
	}
}

func TestHeredocScriptMount(t *testing.T) {
	s := &heredocScript{Name: "EOF", Data: "#!/bin/sh\necho hi\n"}
	tmp := t.TempDir()
	m, remove, err := s.mount(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if m.Target != "/dev/pipes" || !m.ReadOnly || m.Type != "bind" {
		t.Errorf("mount %+v", m)
	}
	fi, err := os.Stat(filepath.Join(m.Source, "EOF"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("script mode %v, want 0755", fi.Mode().Perm())
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.Source); !os.IsNotExist(err) {
		t.Errorf("script dir left behind: %v", err)
	}
}
