// Package exporter turns a built image (config + layers in the content store) into manifests and
// writes it out: the local store, OCI archives and layouts, docker archives, a root file system
// directory; and pulls base images from registries.
package exporter

import (
	"io"

	"kiln/snapshot"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// Image is an image whose layer blobs are in the content store.
type Image struct {
	// The whole config, in Docker's form of the OCI config: it keeps Healthcheck, OnBuild and
	// Shell, which ocispec.ImageConfig lacks. rootfs.diff_ids and history match Layers.
	Config dockerspec.DockerOCIImage
	Layers []snapshot.Layer // bottom first
}

// Output is one -o/--output value, as `docker buildx build` spells it.
type Output struct {
	Type  string            // oci, docker, local, tar, image
	Dest  string            // file or directory; "-" is stdout for archives
	Tar   bool              // oci: false writes a layout directory instead of an archive
	Attrs map[string]string // everything else, as given (name=..., compression=..., ...)

	// Stdout is where Dest "-" writes; nil means os.Stdout.
	Stdout io.Writer `json:"-"`
}

// Output types.
const (
	TypeOCI    = "oci"
	TypeDocker = "docker"
	TypeLocal  = "local"
	TypeTar    = "tar"
	TypeImage  = "image" // the local store (and a registry with push=true)
)

// Media types kiln reads besides the OCI ones: Docker's schema 2 manifest and manifest list,
// which registries still serve for many images.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// AnnotationImageName is containerd's annotation for an image's full name, which BuildKit
// writes next to org.opencontainers.image.ref.name (the tag only) in exported layouts.
const AnnotationImageName = "io.containerd.image.name"
