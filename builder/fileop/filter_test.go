package fileop

import (
	"context"
	"errors"
	"os"
	"testing"
)

// TestExcludeAndParents covers --exclude (relative to each source, a named source never
// excluded, "!" exceptions) and --parents (the "/./" pivot, wildcards, required paths), and that
// Checksum sees exactly what Copy copies.
func TestExcludeAndParents(t *testing.T) {
	tree := []node{
		file("ctx/keep.txt", "k", 0o644), file("ctx/drop.log", "d", 0o644),
		file("ctx/sub/a.log", "a", 0o644), file("ctx/sub/keep.txt", "s", 0o644), file("ctx/sub/skip", "x", 0o644),
		file("a/b/c.txt", "c", 0o644), file("a/b/e.txt", "e", 0o644), file("a/b/deep/d.txt", "d", 0o644), file("a/d.txt", "ad", 0o644),
	}
	cases := []struct {
		name string
		spec Spec
		want []want
		err  error
		// changing unseen leaves the checksum as it is, changing seen does not
		unseen, seen string
	}{
		{name: "exclude", unseen: "ctx/sub/skip", seen: "ctx/keep.txt", spec: Spec{Sources: []string{"ctx"}, Dest: "/o/", Exclude: []string{"*.log", "sub/skip"}}, want: []want{
			wFile("o/keep.txt", "k", 0o644), wFile("o/sub/a.log", "a", 0o644), wAbsent("o/drop.log"), wAbsent("o/sub/skip")}},
		{name: "named source kept", unseen: "ctx/keep.txt", seen: "ctx/drop.log", spec: Spec{Sources: []string{"ctx/drop.log"}, Dest: "/o/", Exclude: []string{"*.log"}}, want: []want{
			wFile("o/drop.log", "d", 0o644)}},
		{name: "exception", unseen: "ctx/sub/skip", seen: "ctx/sub/keep.txt", spec: Spec{Sources: []string{"ctx"}, Dest: "/o/", Exclude: []string{"sub", "!sub/keep.txt"}}, want: []want{
			wFile("o/sub/keep.txt", "s", 0o644), wAbsent("o/sub/skip"), wFile("o/keep.txt", "k", 0o644)}},
		{name: "parents", unseen: "a/b/e.txt", seen: "a/b/c.txt", spec: Spec{Sources: []string{"a/b/c.txt", "a/./b/deep"}, Dest: "/o/", Parents: true}, want: []want{
			wFile("o/a/b/c.txt", "c", 0o644), wAbsent("o/a/b/e.txt"), wFile("o/b/deep/d.txt", "d", 0o644), wAbsent("o/b/c.txt")}},
		{name: "parents wildcard", unseen: "a/b/c.txt", seen: "a/d.txt", spec: Spec{Sources: []string{"a/**/d.txt"}, Dest: "/o", Parents: true}, want: []want{
			wFile("o/a/d.txt", "ad", 0o644), wFile("o/a/b/deep/d.txt", "d", 0o644), wAbsent("o/a/b/c.txt")}},
		{name: "parents missing", spec: Spec{Sources: []string{"a/nope.txt"}, Dest: "/o/", Parents: true}, err: ErrNotFound},
		{name: "parents empty pattern", spec: Spec{Sources: []string{"a/b/./"}, Dest: "/o/", Parents: true}, err: ErrNotFound},
		{name: "symbolic chmod", unseen: "a/d.txt", seen: "a/b/c.txt", spec: Spec{Sources: []string{"a/b"}, Dest: "/o/", ChmodSet: mustModeSet(t, "g+w,o-r")}, want: []want{
			wDir("o", 0o755), wDir("o/deep", 0o771), wFile("o/c.txt", "c", 0o660)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := roots(t)
			mkTree(t, src, tree...)
			s := tc.spec
			s.SrcRoot, s.DestRoot = src, dst
			err := Copy(context.Background(), s)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			check(t, dst, tc.want...)
			// An excluded file is not part of the checksum; a copied one is.
			a, err := Checksum(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []struct {
				path string
				same bool
			}{{tc.unseen, true}, {tc.seen, false}} {
				if err := os.WriteFile(src+"/"+n.path, []byte("changed"), 0o644); err != nil {
					t.Fatal(err)
				}
				b, err := Checksum(context.Background(), s)
				if err != nil {
					t.Fatal(err)
				}
				if (a == b) != n.same {
					t.Errorf("changing %s: checksum same=%v, want %v", n.path, a == b, n.same)
				}
				a = b
			}
		})
	}
}

func mustModeSet(t *testing.T, s string) *ModeSet {
	ms, err := ParseModeSet(s)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}
