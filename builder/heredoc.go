package builder

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// heredocPipes is where a RUN heredoc that starts with "#!" is mounted, read-only, to be run by
// its interpreter: the same place BuildKit mounts it, so that $0 reads the same.
const heredocPipes = "/dev/pipes"

// heredocRun is the command line of a RUN with heredocs, as BuildKit's dispatchRun makes it:
//
//   - the command is only a heredoc (RUN <<EOF): its text is the shell's script, or, when it
//     starts with "#!", a file run by that interpreter;
//   - else (RUN cat <<EOF >file, several heredocs): the instruction is put back together, with
//     every heredoc's body and delimiter, and handed to the shell, which reads the heredocs
//     itself (and so decides about expansion from the quoting of each delimiter).
//
// The result still gets the stage's SHELL wrapped around it. script is set in the "#!" case.
type heredocRun struct {
	args    []string
	script  *heredocScript
	summary string // " (first line...)" for the progress label, or ""
}

// heredocScript is a file of a heredoc with a "#!" line, mounted at /dev/pipes/<name>.
type heredocScript struct {
	Name string `json:"name"`
	Data string `json:"data"`
}

func parseHeredocRun(c *instructions.RunCommand) (heredocRun, error) {
	args := c.CmdLine
	if len(c.Files) == 0 {
		return heredocRun{args: args}, nil
	}
	if len(args) != 1 || !c.PrependShell {
		return heredocRun{}, fmt.Errorf("parsing produced an invalid run command: %v", args)
	}
	if hd := parser.MustParseHeredoc(args[0]); hd != nil {
		f := c.Files[0]
		data := f.Data
		if f.Chomp {
			data = parser.ChompHeredocContent(data)
		}
		out := heredocRun{summary: " (" + summarizeHeredoc(f.Data) + ")"}
		if strings.HasPrefix(data, "#!") {
			if f.Name == "" || strings.ContainsAny(f.Name, "/\x00") || f.Name == "." || f.Name == ".." {
				return heredocRun{}, fmt.Errorf("invalid heredoc name %q", f.Name)
			}
			out.script = &heredocScript{Name: f.Name, Data: data}
			out.args = []string{path.Join(heredocPipes, f.Name)}
		} else {
			out.args = []string{data}
		}
		return out, nil
	}
	var b strings.Builder
	b.WriteString(args[0])
	for _, f := range c.Files {
		b.WriteByte('\n')
		b.WriteString(f.Data)
		b.WriteString(f.Name)
	}
	return heredocRun{args: []string{b.String()}}, nil
}

// summarizeHeredoc is the heredoc's first line, with "..." when there are more: how BuildKit
// shows a heredoc step in its progress.
func summarizeHeredoc(doc string) string {
	doc = strings.TrimSpace(doc)
	lines := strings.Split(strings.ReplaceAll(doc, "\r\n", "\n"), "\n")
	if len(lines) > 1 {
		return lines[0] + "..."
	}
	return lines[0]
}

// mount writes the script into a new directory under tmp and returns the read-only mount of
// that directory at /dev/pipes, and the function that removes the directory.
func (s *heredocScript) mount(tmp string) (kilnrt.Mount, func() error, error) {
	dir, err := os.MkdirTemp(tmp, "heredoc-")
	if err != nil {
		return kilnrt.Mount{}, nil, fmt.Errorf("heredoc: %w", err)
	}
	remove := func() error { return os.RemoveAll(dir) }
	// The sandbox's processes may run as any user: the directory must be searchable by all.
	if err := os.Chmod(dir, 0o755); err != nil {
		remove()
		return kilnrt.Mount{}, nil, fmt.Errorf("heredoc: %w", err)
	}
	p := filepath.Join(dir, s.Name)
	if err := os.WriteFile(p, []byte(s.Data), 0o755); err != nil {
		remove()
		return kilnrt.Mount{}, nil, fmt.Errorf("heredoc: write %s: %w", s.Name, err)
	}
	// WriteFile's mode is filtered by the umask; the file must be executable.
	if err := os.Chmod(p, 0o755); err != nil {
		remove()
		return kilnrt.Mount{}, nil, fmt.Errorf("heredoc: %w", err)
	}
	return kilnrt.Mount{Type: "bind", Source: dir, Target: heredocPipes, ReadOnly: true}, remove, nil
}
