package exporter

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"kiln/cache"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pushLayout puts a layout's tag on the registry at addr with skopeo (--all copies an index
// with all its manifests).
func pushLayout(t *testing.T, layout, tag, dest string, all bool) {
	t.Helper()
	skopeo := needTool(t, "skopeo", "skopeo")
	args := []string{"copy", "--quiet", "--dest-tls-verify=false"}
	if all {
		args = append(args, "--all")
	}
	run(t, skopeo, append(args, "oci:"+layout+":"+tag, "docker://"+dest)...)
}

func checkPulled(t *testing.T, s *cache.Store, desc ocispec.Descriptor, want Image) {
	t.Helper()
	got, mdesc, err := Load(context.Background(), s, desc)
	if err != nil {
		t.Fatal(err)
	}
	if mdesc.Digest != desc.Digest {
		t.Errorf("Load picked %s, want %s", mdesc.Digest, desc.Digest)
	}
	if !reflect.DeepEqual(got.Layers, want.Layers) {
		t.Errorf("pulled layers %+v, want %+v", got.Layers, want.Layers)
	}
	for _, l := range got.Layers {
		if err := s.Verify(l.Digest); err != nil {
			t.Error(err)
		}
	}
}

func TestPull(t *testing.T) {
	addr := startRegistry(t)
	ctx := context.Background()
	src := openStore(t)
	img, desc := testImage(t, src)
	layout := filepath.Join(t.TempDir(), "layout")
	if err := Export(ctx, src, nil, desc, Output{Type: TypeOCI, Dest: layout}, []string{"x:latest"}); err != nil {
		t.Fatal(err)
	}
	pushLayout(t, layout, "latest", addr+"/x:latest", false)

	dst := openStore(t)
	got, err := Pull(ctx, dst, addr+"/x:latest")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != desc.Digest || got.MediaType != ocispec.MediaTypeImageManifest || got.Platform == nil || got.Platform.Architecture != "amd64" {
		t.Fatalf("Pull = %+v, want manifest %s", got, desc.Digest)
	}
	checkPulled(t, dst, got, img)
	if len(dst.TmpDir()) == 0 {
		t.Fatal("no tmp dir")
	}
	if tags, _ := dst.Tags(); len(tags) != 0 {
		t.Errorf("Pull tagged the image: %v", tags)
	}

	// Again: everything is present; a corrupt blob is fetched anew.
	p := dst.BlobPath(img.Layers[1].Digest)
	os.WriteFile(p, []byte("corrupt"), 0o644)
	again, err := Pull(ctx, dst, addr+"/x")
	if err != nil || again.Digest != desc.Digest {
		t.Fatalf("second Pull = %v, %v", again.Digest, err)
	}
	if err := dst.Verify(img.Layers[1].Digest); err != nil {
		t.Errorf("corrupt blob not repaired: %v", err)
	}

	// By digest, also from a store that has nothing.
	byDigest, err := Pull(ctx, openStore(t), addr+"/x@"+desc.Digest.String())
	if err != nil || byDigest.Digest != desc.Digest {
		t.Errorf("Pull by digest = %v, %v", byDigest.Digest, err)
	}

	// Errors are errors, not panics.
	for _, bad := range []string{addr + "/missing:latest", "UPPER/case", addr + "/x:nosuchtag"} {
		if _, err := Pull(ctx, dst, bad); err == nil {
			t.Errorf("Pull(%q) succeeded", bad)
		}
	}
}

// TestPullIndex pushes a two-platform index and checks that Pull picks linux/amd64.
func TestPullIndex(t *testing.T) {
	addr := startRegistry(t)
	ctx := context.Background()
	src := openStore(t)
	img, amd := testImage(t, src)
	armImg := img
	armImg.Config.Architecture = "arm64"
	arm, err := Commit(ctx, src, armImg)
	if err != nil {
		t.Fatal(err)
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{arm, amd}}
	ib, _ := json.Marshal(idx)
	idesc, err := src.WriteBlob(ocispec.MediaTypeImageIndex, ib)
	if err != nil {
		t.Fatal(err)
	}
	// A layout holding both manifests and the index, tagged "multi".
	layout := filepath.Join(t.TempDir(), "layout")
	for _, d := range []ocispec.Descriptor{arm, amd} {
		if err := Export(ctx, src, nil, d, Output{Type: TypeOCI, Dest: layout}, []string{"x:" + d.Platform.Architecture}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(layout, "blobs/sha256", idesc.Digest.Encoded()), ib, 0o444); err != nil {
		t.Fatal(err)
	}
	idesc.Annotations = map[string]string{ocispec.AnnotationRefName: "multi"}
	lb, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{idesc}})
	if err := os.WriteFile(filepath.Join(layout, "index.json"), lb, 0o644); err != nil {
		t.Fatal(err)
	}
	pushLayout(t, layout, "multi", addr+"/multi:latest", true)

	dst := openStore(t)
	got, err := Pull(ctx, dst, addr+"/multi:latest")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != amd.Digest {
		t.Fatalf("Pull picked %s, want the amd64 manifest %s (arm64 is %s)", got.Digest, amd.Digest, arm.Digest)
	}
	checkPulled(t, dst, got, img)
	if !dst.Has(idesc.Digest) {
		t.Error("index not stored")
	}
	if dst.Has(arm.Digest) {
		t.Error("arm64 manifest fetched")
	}
	// Load of the stored index picks the same manifest.
	if _, m, err := Load(ctx, dst, ocispec.Descriptor{Digest: idesc.Digest}); err != nil || m.Digest != amd.Digest {
		t.Errorf("Load(index) = %v, %v", m.Digest, err)
	}
}

// TestPushThenPull pushes with Push (type=image,push=true) and reads it back with skopeo and Pull.
func TestPushThenPull(t *testing.T) {
	addr := startRegistry(t)
	skopeo := needTool(t, "skopeo", "skopeo")
	ctx := context.Background()
	src := openStore(t)
	img, desc := testImage(t, src)
	ref := addr + "/pushed:v1"
	if err := Export(ctx, src, nil, desc, Output{Type: TypeImage, Attrs: map[string]string{"push": "true"}}, []string{ref}); err != nil {
		t.Fatal(err)
	}
	var inspect struct{ Digest string }
	if err := json.Unmarshal([]byte(run(t, skopeo, "inspect", "--tls-verify=false", "docker://"+ref)), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Digest != desc.Digest.String() {
		t.Errorf("registry has %s, pushed %s", inspect.Digest, desc.Digest)
	}
	dst := openStore(t)
	got, err := Pull(ctx, dst, ref)
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, dst, got, img)
}
