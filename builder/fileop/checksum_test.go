package fileop

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func checksumTree() []node {
	return []node{
		file(".dockerignore", "*.log\n", 0o644),
		file("a.txt", "a", 0o644),
		dir("d", 0o755),
		file("d/b", "b", 0o600),
		symlink("d/l", "../a.txt"),
		file("x.log", "log", 0o644),
	}
}

func TestChecksum(t *testing.T) {
	base := func(t *testing.T) (string, Spec) {
		src := t.TempDir()
		mkTree(t, src, checksumTree()...)
		s := Spec{SrcRoot: src, Sources: []string{"."}}
		loadTestIgnore(t, &s)
		return src, s
	}
	sum := func(t *testing.T, s Spec) string {
		t.Helper()
		d, err := Checksum(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	cases := []struct {
		name   string
		mutate func(t *testing.T, src string, s *Spec)
		same   bool
	}{
		{name: "unchanged", same: true, mutate: func(*testing.T, string, *Spec) {}},
		{name: "mtime", same: true, mutate: func(t *testing.T, src string, _ *Spec) {
			os.Chtimes(filepath.Join(src, "d/b"), time.Now(), time.Now())
		}},
		{name: "owner", same: true, mutate: func(t *testing.T, src string, _ *Spec) { os.Lchown(filepath.Join(src, "d/b"), 5, 5) }},
		{name: "owner with KeepOwners", mutate: func(t *testing.T, src string, s *Spec) {
			os.Lchown(filepath.Join(src, "d/b"), 5, 5)
			s.KeepOwners = true
		}},
		{name: "ignored file added", same: true, mutate: func(t *testing.T, src string, _ *Spec) { mkTree(t, src, file("new.log", "n", 0o644)) }},
		{name: "ignored file changed", same: true, mutate: func(t *testing.T, src string, _ *Spec) {
			os.WriteFile(filepath.Join(src, "x.log"), []byte("zz"), 0o644)
		}},
		{name: "content", mutate: func(t *testing.T, src string, _ *Spec) { os.WriteFile(filepath.Join(src, "d/b"), []byte("B"), 0o600) }},
		{name: "mode", mutate: func(t *testing.T, src string, _ *Spec) { os.Chmod(filepath.Join(src, "d/b"), 0o644) }},
		{name: "symlink target", mutate: func(t *testing.T, src string, _ *Spec) {
			os.Remove(filepath.Join(src, "d/l"))
			os.Symlink("../d/b", filepath.Join(src, "d/l"))
		}},
		{name: "file added", mutate: func(t *testing.T, src string, _ *Spec) { mkTree(t, src, file("d/c", "", 0o600)) }},
		{name: "empty dir added", mutate: func(t *testing.T, src string, _ *Spec) { mkTree(t, src, dir("e", 0o755)) }},
		{name: "renamed", mutate: func(t *testing.T, src string, _ *Spec) {
			os.Rename(filepath.Join(src, "a.txt"), filepath.Join(src, "a2.txt"))
		}},
		{name: "file becomes hardlink", mutate: func(t *testing.T, src string, _ *Spec) {
			os.Remove(filepath.Join(src, "d/b"))
			os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "d/b"))
		}},
		{name: "ignore changed", mutate: func(t *testing.T, src string, s *Spec) { s.Ignore = nil }},
	}
	_, s0 := base(t)
	want := sum(t, s0)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, s := base(t)
			tc.mutate(t, src, &s)
			got := sum(t, s)
			if (got == want) != tc.same {
				t.Fatalf("digest %s vs %s: same=%v, want same=%v", got, want, got == want, tc.same)
			}
		})
	}

	t.Run("sources and wildcards", func(t *testing.T) {
		_, s := base(t)
		s.Sources = []string{"a.txt", "d"}
		ab := sum(t, s)
		s.Sources = []string{"d", "a.txt"}
		if sum(t, s) == ab {
			t.Fatal("source order does not change the digest")
		}
		s.Sources = []string{"*.txt", "d", "nomatch*"}
		if sum(t, s) != ab {
			t.Fatal("wildcard matching a.txt differs from naming it")
		}
		s.Sources = []string{"*.log"}
		s2 := s
		s2.Sources = []string{"nomatch*"}
		if sum(t, s) != sum(t, s2) {
			t.Fatal("wildcard matching only ignored files is not empty")
		}
		s.Sources = []string{"missing"}
		if _, err := Checksum(context.Background(), s); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing source: %v", err)
		}
	})
}

// TestChecksumMatchesCopy checks that the digest of a copy's result equals
// the digest of its source (what Copy wrote is what Checksum read).
func TestChecksumMatchesCopy(t *testing.T) {
	src, dst := roots(t)
	mkTree(t, src, checksumTree()...)
	mkTree(t, src, hardlink("d/h", "d/b"))
	s := Spec{SrcRoot: src, DestRoot: dst, Sources: []string{"."}, Dest: "/"}
	loadTestIgnore(t, &s)
	if err := Copy(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	a, err := Checksum(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Checksum(context.Background(), Spec{SrcRoot: dst, Sources: []string{"."}})
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("source %s, copy %s", a, b)
	}
}
