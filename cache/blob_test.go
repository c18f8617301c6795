package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenMakesLayout(t *testing.T) {
	s := openStore(t)
	for _, p := range []string{"content/oci-layout", "content/index.json", "content/blobs/sha256", "snapshots", "cache/steps", "tmp"} {
		if _, err := os.Stat(s.Root() + "/" + p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	b, err := os.ReadFile(s.Root() + "/content/oci-layout")
	if err != nil || string(b) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q, %v", b, err)
	}
	// Reopening keeps what is there.
	desc, err := s.WriteBlob("text/plain", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("app", desc); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Resolve("app"); err != nil {
		t.Errorf("after reopen: %v", err)
	}
}

func TestBlobRoundTrip(t *testing.T) {
	s := openStore(t)
	data := []byte("hello blob")
	desc, err := s.WriteBlob("application/octet-stream", data)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != digest.FromBytes(data) || desc.Size != int64(len(data)) || desc.MediaType != "application/octet-stream" {
		t.Fatalf("descriptor %+v", desc)
	}
	if !s.Has(desc.Digest) {
		t.Fatal("Has = false after WriteBlob")
	}
	got, err := s.ReadBlob(desc.Digest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadBlob = %q, %v", got, err)
	}
	r, err := s.OpenBlob(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("OpenBlob read %q", got)
	}
	if err := s.Verify(desc.Digest); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	missing := digest.FromString("nope")
	if s.Has(missing) {
		t.Error("Has(missing) = true")
	}
	if _, err := s.ReadBlob(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadBlob(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.OpenBlob(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenBlob(missing) = %v, want ErrNotFound", err)
	}
	if err := s.Verify(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify(missing) = %v, want ErrNotFound", err)
	}
	for _, bad := range []digest.Digest{"", "sha256:../../etc/passwd", "md5:abc", "sha512:" + digest.Digest(strings.Repeat("a", 128))} {
		if _, err := s.ReadBlob(bad); err == nil {
			t.Errorf("ReadBlob(%q) succeeded", bad)
		}
		if s.Has(bad) {
			t.Errorf("Has(%q) = true", bad)
		}
	}
}

func TestCorruptBlobDetected(t *testing.T) {
	s := openStore(t)
	desc, err := s.WriteBlob("text/plain", []byte("original content"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.BlobPath(desc.Digest), []byte("tampered content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(desc.Digest); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Verify = %v, want ErrDigestMismatch", err)
	}
	if _, err := s.ReadBlob(desc.Digest); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("ReadBlob = %v, want ErrDigestMismatch", err)
	}
	// Writing it again repairs it.
	if _, err := s.WriteBlob("text/plain", []byte("original content")); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(desc.Digest); err != nil {
		t.Errorf("after rewrite: %v", err)
	}
}

func TestBlobWriter(t *testing.T) {
	s := openStore(t)
	data := bytes.Repeat([]byte("0123456789"), 100000)
	want := digest.FromBytes(data)

	t.Run("commit expected", func(t *testing.T) {
		w, err := s.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		for i := 0; i < len(data); i += 4096 {
			if _, err := w.Write(data[i:min(i+4096, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		d, n, err := w.Commit(want)
		if err != nil || d != want || n != int64(len(data)) {
			t.Fatalf("Commit = %s, %d, %v", d, n, err)
		}
		if err := s.Verify(want); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("commit computed", func(t *testing.T) {
		w, err := s.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("abc"))
		d, n, err := w.Commit("")
		if err != nil || d != digest.FromString("abc") || n != 3 {
			t.Fatalf("Commit = %s, %d, %v", d, n, err)
		}
	})
	t.Run("wrong digest", func(t *testing.T) {
		w, err := s.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("not what was promised"))
		wrong := digest.FromString("something else")
		if _, _, err := w.Commit(wrong); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("Commit = %v, want ErrDigestMismatch", err)
		}
		if s.Has(wrong) || s.Has(digest.FromString("not what was promised")) {
			t.Error("a rejected blob was stored")
		}
	})
	t.Run("close discards", func(t *testing.T) {
		w, err := s.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("discarded"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if s.Has(digest.FromString("discarded")) {
			t.Error("closed blob was stored")
		}
	})
	// Nothing is left in tmp by any of the above.
	entries, _ := os.ReadDir(s.TmpDir())
	if len(entries) != 0 {
		t.Errorf("tmp dir holds %d entries after writers finished", len(entries))
	}
}

func TestConcurrentWritersSameBlob(t *testing.T) {
	s := openStore(t)
	data := bytes.Repeat([]byte("concurrent "), 200000)
	want := digest.FromBytes(data)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.NewWriter()
			if err != nil {
				errs <- err
				return
			}
			defer w.Close()
			for off := 0; off < len(data); off += 32768 {
				if _, err := w.Write(data[off:min(off+32768, len(data))]); err != nil {
					errs <- err
					return
				}
			}
			if _, _, err := w.Commit(want); err != nil {
				errs <- err
			}
		}()
	}
	// Readers meanwhile never see a partial blob: when it exists, it verifies.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			if s.Has(want) {
				if err := s.Verify(want); err != nil {
					errs <- fmt.Errorf("reader saw a bad blob: %w", err)
					return
				}
			}
		}
	}()
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Verify(want); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(s.Root() + "/content/blobs/sha256")
	if len(entries) != 1 {
		t.Errorf("blobs dir holds %d files, want 1", len(entries))
	}
}

func BenchmarkBlobWriter(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	buf := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 1<<17) // 1 MiB
	b.SetBytes(int64(len(buf)) * 8)
	for i := 0; i < b.N; i++ {
		w, err := s.NewWriter()
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < 8; j++ {
			w.Write(buf)
		}
		w.Write([]byte(fmt.Sprint(i)))
		if _, _, err := w.Commit(""); err != nil {
			b.Fatal(err)
		}
	}
}
