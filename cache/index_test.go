package cache

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct{ in, full, familiar string }{
		{"app", "docker.io/library/app:latest", "app:latest"},
		{"app:v1", "docker.io/library/app:v1", "app:v1"},
		{"docker.io/library/app:latest", "docker.io/library/app:latest", "app:latest"},
		{"index.docker.io/library/app", "docker.io/library/app:latest", "app:latest"},
		{"me/app:v2", "docker.io/me/app:v2", "me/app:v2"},
		{"127.0.0.1:5000/busybox:latest", "127.0.0.1:5000/busybox:latest", "127.0.0.1:5000/busybox:latest"},
		{"localhost:5000/a/b", "localhost:5000/a/b:latest", "localhost:5000/a/b:latest"},
		{"ghcr.io/o/r:1.0", "ghcr.io/o/r:1.0", "ghcr.io/o/r:1.0"},
	} {
		full, err := NormalizeName(tc.in)
		if err != nil || full != tc.full {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, full, err, tc.full)
		}
		if f := FamiliarName(full); f != tc.familiar {
			t.Errorf("FamiliarName(%q) = %q, want %q", full, f, tc.familiar)
		}
	}
	for _, bad := range []string{"", "App", "app@sha256:" + strings.Repeat("a", 64), "a b", "app:"} {
		if got, err := NormalizeName(bad); err == nil {
			t.Errorf("NormalizeName(%q) = %q, want error", bad, got)
		}
	}
	if TagOf("127.0.0.1:5000/x:v3") != "v3" || TagOf("docker.io/library/app:latest") != "latest" {
		t.Error("TagOf")
	}
}

func manifestBlob(t *testing.T, s *Store, content string) ocispec.Descriptor {
	t.Helper()
	d, err := s.WriteBlob(ocispec.MediaTypeImageManifest, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestTags(t *testing.T) {
	s := openStore(t)
	a := manifestBlob(t, s, `{"a":1}`)
	b := manifestBlob(t, s, `{"b":2}`)
	if err := s.Tag("app", a); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("127.0.0.1:5000/busybox:latest", b); err != nil {
		t.Fatal(err)
	}
	tags, err := s.Tags()
	if err != nil || len(tags) != 2 {
		t.Fatalf("Tags = %v, %v", tags, err)
	}
	names := map[string]string{}
	for _, d := range tags {
		names[d.Annotations[ocispec.AnnotationRefName]] = d.Digest.String()
	}
	if names["docker.io/library/app:latest"] != a.Digest.String() || names["127.0.0.1:5000/busybox:latest"] != b.Digest.String() {
		t.Fatalf("tags = %v", names)
	}
	// Re-tagging replaces.
	if err := s.Tag("docker.io/library/app:latest", b); err != nil {
		t.Fatal(err)
	}
	tags, _ = s.Tags()
	if len(tags) != 2 {
		t.Fatalf("after retag: %d tags", len(tags))
	}
	got, err := s.Resolve("app")
	if err != nil || got.Digest != b.Digest || got.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("Resolve(app) = %+v, %v", got, err)
	}
	if err := s.Untag("app:latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve("app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after untag: %v", err)
	}
	if err := s.Untag("app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("untag twice: %v", err)
	}
	if err := s.Tag("ghost", ocispec.Descriptor{Digest: digest.Digest("sha256:" + strings.Repeat("0", 64))}); !errors.Is(err, ErrNotFound) {
		t.Errorf("tag of a missing blob: %v", err)
	}
}

func TestResolveForms(t *testing.T) {
	s := openStore(t)
	a := manifestBlob(t, s, `{"a":1}`)
	b := manifestBlob(t, s, `{"b":2}`)
	s.Tag("app:latest", a)
	s.Tag("app:v1", a)
	s.Tag("127.0.0.1:5000/busybox:latest", b)
	hexA := a.Digest.Encoded()
	for _, tc := range []struct {
		in   string
		want ocispec.Descriptor
		err  error
	}{
		{"app", a, nil},
		{"app:latest", a, nil},
		{"docker.io/library/app:v1", a, nil},
		{"127.0.0.1:5000/busybox:latest", b, nil},
		{"127.0.0.1:5000/busybox", b, nil},
		{a.Digest.String(), a, nil},
		{"sha256:" + hexA[:12], a, nil},
		{hexA[:12], a, nil},
		{hexA, a, nil},
		{"sha256:" + hexA[:11], ocispec.Descriptor{}, errors.New("too short")},
		{"app:v2", ocispec.Descriptor{}, ErrNotFound},
		{"sha256:" + strings.Repeat("f", 64), ocispec.Descriptor{}, ErrNotFound},
		{"Bad Name", ocispec.Descriptor{}, errors.New("invalid")},
	} {
		got, err := s.Resolve(tc.in)
		if tc.err != nil {
			if err == nil {
				t.Errorf("Resolve(%q) = %v, want error", tc.in, got.Digest)
			} else if errors.Is(tc.err, ErrNotFound) && !errors.Is(err, ErrNotFound) {
				t.Errorf("Resolve(%q) = %v, want ErrNotFound", tc.in, err)
			}
			continue
		}
		if err != nil || got.Digest != tc.want.Digest {
			t.Errorf("Resolve(%q) = %v, %v; want %v", tc.in, got.Digest, err, tc.want.Digest)
		}
	}
}

func TestResolveAmbiguousPrefix(t *testing.T) {
	s := openStore(t)
	// Two digests sharing 12 digits cannot be found by hashing; write such entries straight
	// into index.json (Resolve only looks at the index).
	common := "0123456789ab"
	one := digest.NewDigestFromEncoded(digest.SHA256, common+strings.Repeat("1", 52))
	two := digest.NewDigestFromEncoded(digest.SHA256, common+strings.Repeat("2", 52))
	err := s.updateIndex(func(idx *ocispec.Index) error {
		for i, d := range []digest.Digest{one, two} {
			idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
				MediaType:   ocispec.MediaTypeImageManifest,
				Digest:      d,
				Annotations: map[string]string{ocispec.AnnotationRefName: fmt.Sprintf("docker.io/library/x:%d", i)},
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve("sha256:" + common); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("Resolve(common prefix) = %v, want ErrAmbiguous", err)
	}
	if got, err := s.Resolve(common + "2"); err != nil || got.Digest != two {
		t.Errorf("Resolve(longer prefix) = %v, %v", got.Digest, err)
	}
}

func TestConcurrentTagging(t *testing.T) {
	s := openStore(t)
	d := manifestBlob(t, s, `{"c":1}`)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A second Store on the same root stands in for another process.
			s2, err := Open(s.Root())
			if err != nil {
				t.Error(err)
				return
			}
			defer s2.Close()
			if err := s2.Tag(fmt.Sprintf("app:v%d", i), d); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	tags, err := s.Tags()
	if err != nil || len(tags) != 20 {
		t.Fatalf("Tags = %d, %v; want 20 (a lost update)", len(tags), err)
	}
}
