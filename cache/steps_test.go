package cache

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"kiln/snapshot"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestStepRecords(t *testing.T) {
	s := openStore(t)
	key := digest.FromString("step key")
	if _, err := s.GetStep(key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetStep(absent) = %v, want ErrNotFound", err)
	}
	created := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	rec := StepRecord{
		Layer: &snapshot.Layer{
			Digest: digest.FromString("blob"), DiffID: digest.FromString("tar"), Size: 4,
			MediaType: ocispec.MediaTypeImageLayerGzip,
		},
		ChainID: digest.FromString("chain").String(),
		Created: created,
	}
	if err := s.PutStep(key, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetStep(key)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Layer != *rec.Layer || got.ChainID != rec.ChainID || !got.Created.Equal(created) {
		t.Fatalf("GetStep = %+v, want %+v", got, rec)
	}
	// A step that made no layer.
	key2 := digest.FromString("config only")
	if err := s.PutStep(key2, StepRecord{ChainID: rec.ChainID, Created: created}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetStep(key2); err != nil || got.Layer != nil {
		t.Fatalf("GetStep(no layer) = %+v, %v", got, err)
	}
	if err := s.PutStep("sha256:zz", rec); err == nil {
		t.Error("PutStep with a bad key succeeded")
	}
}

func TestLock(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	u1, err := s.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := s.Lock(ctx, false)
	if err != nil {
		t.Fatal("two shared locks conflict:", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(short, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("exclusive lock while shared held = %v, want deadline exceeded", err)
	}
	u1()
	u2()
	u3, err := s.Lock(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	// Prune under our own exclusive lock does not deadlock.
	pctx, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if _, err := s.Prune(pctx, false); err != nil {
		t.Fatal(err)
	}
	u3()
}

func TestTmpCleanup(t *testing.T) {
	root := t.TempDir()
	s1, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	live := s1.TmpDir()
	os.WriteFile(live+"/work", []byte("x"), 0o644)
	// A directory of a process that is gone: its lock file exists but nobody holds it.
	dead := root + "/tmp/999999-deadbeef"
	os.MkdirAll(dead+"/sub", 0o755)
	os.WriteFile(dead+".lock", nil, 0o644)
	// Stray entries without a lock: removed only once old.
	fresh := root + "/tmp/fresh"
	stale := root + "/tmp/stale"
	os.WriteFile(fresh, nil, 0o644)
	os.WriteFile(stale, nil, 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)

	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for p, want := range map[string]bool{live + "/work": true, dead: false, dead + ".lock": false, fresh: true, stale: false} {
		_, err := os.Stat(p)
		if (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", p, err == nil, want)
		}
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s2.TmpDir()); !os.IsNotExist(err) {
		t.Error("Close left the tmp dir")
	}
}
