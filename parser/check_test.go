package parser

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
)

// The cases in testdata/checks hold a Dockerfile and what BuildKit v0.34.2's own
// dockerfile2llb.DockerfileLint printed for it: expected.txt is the warnings as
// `docker build --check` prints them (after its "Check complete" line), expected-error.txt the
// error that stops the build. Optional files give the inputs: target, build-args (KEY=VALUE
// lines), .dockerignore. Base images come from testdata/checks/images/<name>.json, any other
// name is a busybox-like amd64 config without layers, and "missing" does not exist.

const checksDir = "../testdata/checks"

// casesDir is where TestCheckMatchesBuildKit reads its cases: KILN_CHECK_CASES may point it at
// other cases recorded the same way (e.g. generated ones, to compare more Dockerfiles).
func casesDir() string {
	if d := os.Getenv("KILN_CHECK_CASES"); d != "" {
		return d
	}
	return checksDir
}

const busyboxConfig = `{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}`

// caseImages resolves a base image to the config the expectations were recorded with.
func caseImages(ctx context.Context, ref string) (digest.Digest, []byte, error) {
	name := path.Base(ref)
	if i := strings.IndexAny(name, ":@"); i >= 0 {
		name = name[:i]
	}
	if name == "missing" {
		return "", nil, errors.New("not found")
	}
	dt, err := os.ReadFile(filepath.Join(checksDir, "images", name+".json"))
	if err != nil {
		dt = []byte(busyboxConfig)
	}
	return digest.FromBytes(dt), dt, nil
}

func loadCheckCase(t *testing.T, dir string) ([]byte, CheckOptions) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	opts := CheckOptions{BuildArgs: map[string]string{}, Resolve: caseImages}
	if b, err := os.ReadFile(filepath.Join(dir, "target")); err == nil {
		opts.Target = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "build-args")); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				opts.BuildArgs[k] = v
			}
		}
	}
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		opts.DockerIgnore, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return data, opts
}

func readOptional(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameError compares printed errors; BuildKit lists the rules of a `check=error=true` failure
// in random order, so those are compared as sets.
func sameError(got, want string) bool {
	const prefix = "lint violation found for rules: "
	if !strings.HasPrefix(got, prefix) || !strings.HasPrefix(want, prefix) {
		return got == want
	}
	set := func(s string) []string {
		rules := strings.Split(strings.TrimSpace(strings.TrimPrefix(s, prefix)), ", ")
		slices.Sort(rules)
		return rules
	}
	return slices.Equal(set(got), set(want))
}

func TestCheckMatchesBuildKit(t *testing.T) {
	entries, err := os.ReadDir(casesDir())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		dir := filepath.Join(casesDir(), e.Name())
		if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err != nil {
			continue
		}
		n++
		t.Run(e.Name(), func(t *testing.T) {
			data, opts := loadCheckCase(t, dir)
			res, err := Check(context.Background(), "Dockerfile", data, opts)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			var out, errOut bytes.Buffer
			if err := res.Print(&out); err != nil {
				t.Fatal(err)
			}
			if err := res.PrintError(&errOut); err != nil {
				t.Fatal(err)
			}
			if want := readOptional(t, filepath.Join(dir, "expected.txt")); out.String() != want {
				t.Errorf("warnings differ from BuildKit's\n--- got\n%s\n--- want\n%s", out.String(), want)
			}
			if want := readOptional(t, filepath.Join(dir, "expected-error.txt")); !sameError(errOut.String(), want) {
				t.Errorf("error differs from BuildKit's\n--- got\n%s\n--- want\n%s", errOut.String(), want)
			}
			if res.Failed() != (out.Len() > 0 || errOut.Len() > 0) {
				t.Errorf("Failed() = %v with %d findings and error %v", res.Failed(), len(res.Findings), res.Err)
			}
		})
	}
	if n < 20 {
		t.Fatalf("only %d check cases found in %s", n, casesDir())
	}
}

// TestCheckSeveralRules is the acceptance case: a Dockerfile breaking many rules gets
// every rule name on its line, and fails the command.
func TestCheckSeveralRules(t *testing.T) {
	data, opts := loadCheckCase(t, filepath.Join(checksDir, "several-rules"))
	res, err := Check(context.Background(), "Dockerfile", data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Failed() || res.Err != nil {
		t.Fatalf("Failed() = %v, Err = %v; want findings and no error", res.Failed(), res.Err)
	}
	want := map[string]bool{}
	for _, r := range []string{"StageNameCasing", "FromAsCasing", "UndefinedArgInFrom", "MaintainerDeprecated",
		"LegacyKeyValueFormat", "SecretsUsedInArgOrEnv", "WorkdirRelativePath", "UndefinedVar",
		"ConsistentInstructionCasing", "ExposeProtoCasing", "ExposeInvalidFormat", "JSONArgsRecommended",
		"MultipleInstructionsDisallowed", "DuplicateStageName"} {
		want[r] = false
	}
	for _, f := range res.Findings {
		if f.Line < 1 {
			t.Errorf("%s has no line", f.Rule)
		}
		want[f.Rule] = true
	}
	for r, seen := range want {
		if !seen {
			t.Errorf("rule %s not reported", r)
		}
	}
	ws := res.Warnings()
	if len(ws) != len(res.Findings) || !strings.HasPrefix(ws[0].Message, res.Findings[0].Rule+": ") {
		t.Errorf("Warnings() = %v", ws)
	}
}

func TestCheckEmptyDockerfile(t *testing.T) {
	res, err := Check(context.Background(), "Dockerfile", nil, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil || res.Err.Error() != "the Dockerfile cannot be empty" {
		t.Fatalf("Err = %v", res.Err)
	}
}

// TestCheckNoResolver: without a way to read base images, the checks that need them report
// an error instead of guessing.
func TestCheckNoResolver(t *testing.T) {
	res, err := Check(context.Background(), "Dockerfile", []byte("FROM busybox\nCMD echo hi\n"), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "busybox") {
		t.Fatalf("Err = %v, want an error naming the image", res.Err)
	}
}

func BenchmarkCheck(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(checksDir, "several-rules", "Dockerfile"))
	if err != nil {
		b.Fatal(err)
	}
	opts := CheckOptions{Resolve: caseImages}
	for b.Loop() {
		if _, err := Check(context.Background(), "Dockerfile", data, opts); err != nil {
			b.Fatal(err)
		}
	}
}
