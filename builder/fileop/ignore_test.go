package fileop

import (
	"path/filepath"
	"testing"
)

const testIgnore = `# comment
*.log
!keep.log
**/*.tmp
/secret
node_modules
docs
!docs/README.md
`

func ignoreTree() []node {
	return []node{
		file(".dockerignore", testIgnore, 0o644),
		file("Dockerfile", "FROM scratch\n", 0o644),
		file("a.log", "a", 0o644),
		file("keep.log", "k", 0o644),
		file("x/y/z.tmp", "z", 0o644),
		file("x/y/ok.txt", "ok", 0o644),
		file("secret", "s", 0o600),
		symlink("tosecret", "secret"),
		file("node_modules/m/index.js", "js", 0o644),
		file("docs/a.md", "a", 0o644),
		file("docs/README.md", "r", 0o644),
	}
}

func TestIgnoreExcluded(t *testing.T) {
	ig, err := NewIgnore([]string{"*.log", "!keep.log", "**/*.tmp", "secret", "node_modules", "docs", "!docs/README.md"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		rel   string
		isDir bool
		want  bool
	}{
		{"a.log", false, true},
		{"keep.log", false, false},
		{"sub/a.log", false, false}, // "*.log" is anchored at the root
		{"x/y/z.tmp", false, true},
		{"z.tmp", false, true},
		{"secret", false, true},
		{"node_modules", true, true},
		{"node_modules/m/index.js", false, true},
		{"docs/a.md", false, true},
		{"docs/README.md", false, false},
		{"./docs/../a.log", false, true},
		{"", true, false},
		{"Dockerfile", false, false},
	}
	for _, tc := range cases {
		got, err := ig.Excluded(tc.rel, tc.isDir)
		if err != nil || got != tc.want {
			t.Errorf("Excluded(%q) = %v, %v; want %v", tc.rel, got, err, tc.want)
		}
	}
	var none *Ignore
	if ex, err := none.Excluded("a.log", false); ex || err != nil {
		t.Errorf("nil Ignore excluded a.log: %v %v", ex, err)
	}
}

func TestLoadIgnore(t *testing.T) {
	ctxDir := t.TempDir()
	mkTree(t, ctxDir, file(".dockerignore", "*.log\n", 0o644), file("build/app.Dockerfile", "FROM scratch", 0o644),
		file("build/app.Dockerfile.dockerignore", "/keep.log\n", 0o644), file("build/other.Dockerfile", "FROM scratch", 0o644))
	cases := []struct {
		name       string
		dockerfile string
		excluded   string
		kept       string
		nilIgnore  bool
	}{
		{name: "context file", dockerfile: filepath.Join(ctxDir, "Dockerfile"), excluded: "a.log", kept: "keep"},
		{name: "dockerfile-specific wins", dockerfile: filepath.Join(ctxDir, "build/app.Dockerfile"), excluded: "keep.log", kept: "a.log"},
		{name: "no specific file falls back", dockerfile: filepath.Join(ctxDir, "build/other.Dockerfile"), excluded: "a.log", kept: "x"},
		{name: "stdin dockerfile", dockerfile: "-", excluded: "a.log", kept: "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ig, err := LoadIgnore(ctxDir, tc.dockerfile)
			if err != nil {
				t.Fatal(err)
			}
			if ex, _ := ig.Excluded(tc.excluded, false); !ex {
				t.Errorf("%s not excluded", tc.excluded)
			}
			if ex, _ := ig.Excluded(tc.kept, false); ex {
				t.Errorf("%s excluded", tc.kept)
			}
		})
	}
	empty := t.TempDir()
	if ig, err := LoadIgnore(empty, ""); ig != nil || err != nil {
		t.Fatalf("empty context: %v, %v", ig, err)
	}
}

// TestCopyIgnore covers .dockerignore as seen by COPY: excluded paths don't
// exist, "!" brings files back (with their excluded parent dirs), and the
// Dockerfile and .dockerignore are ordinary files.
func TestCopyIgnore(t *testing.T) {
	cases := []copyCase{
		{name: "whole context", spec: Spec{Sources: []string{"."}, Dest: "/c/"},
			want: []want{
				wFile("c/keep.log", "k", 0o644), wAbsent("c/a.log"),
				wFile("c/x/y/ok.txt", "ok", 0o644), wAbsent("c/x/y/z.tmp"),
				wAbsent("c/secret"), wLink("c/tosecret", "secret"), wAbsent("c/node_modules"),
				wFile("c/docs/README.md", "r", 0o644), wAbsent("c/docs/a.md"), wDir("c/docs", 0o755),
				wFile("c/Dockerfile", "FROM scratch\n", 0o644), wFile("c/.dockerignore", testIgnore, 0o644),
			}},
		{name: "excluded file named", spec: Spec{Sources: []string{"secret"}, Dest: "/"}, wantErr: `"/secret": not found`, errIs: ErrNotFound},
		{name: "link to excluded file", spec: Spec{Sources: []string{"tosecret"}, Dest: "/"}, errIs: ErrNotFound},
		{name: "excluded dir named", spec: Spec{Sources: []string{"node_modules"}, Dest: "/"}, errIs: ErrNotFound},
		{name: "file inside excluded dir", spec: Spec{Sources: []string{"node_modules/m/index.js"}, Dest: "/"}, errIs: ErrNotFound},
		{name: "excluded dir with kept file", spec: Spec{Sources: []string{"docs"}, Dest: "/d"},
			want: []want{wFile("d/README.md", "r", 0o644), wAbsent("d/a.md")}},
		{name: "wildcard skips excluded", spec: Spec{Sources: []string{"*.log"}, Dest: "/l/"},
			want: []want{wFile("l/keep.log", "k", 0o644), wAbsent("l/a.log")}},
	}
	for i := range cases {
		cases[i].src = ignoreTree()
		cases[i].prepare = loadTestIgnore
	}
	cases = append(cases, copyCase{name: "Dockerfile and .dockerignore can be ignored",
		src:     []node{file(".dockerignore", "Dockerfile\n.dockerignore\n", 0o644), file("Dockerfile", "FROM scratch", 0o644), file("app.go", "go", 0o644)},
		prepare: loadTestIgnore, spec: Spec{Sources: []string{"."}, Dest: "/c"},
		want: []want{wAbsent("c/Dockerfile"), wAbsent("c/.dockerignore"), wFile("c/app.go", "go", 0o644)}})
	runCopyCases(t, cases)
}

// loadTestIgnore reads the context's own .dockerignore, as a build does.
func loadTestIgnore(t *testing.T, s *Spec) {
	ig, err := LoadIgnore(s.SrcRoot, filepath.Join(s.SrcRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	s.Ignore = ig
}
