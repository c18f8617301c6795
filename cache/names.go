package cache

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Image names are stored in their full, normalised form, as docker's reference package writes
// them: registry/repository:tag with Docker Hub spelled "docker.io" and its official images
// under "library/" ("app" -> "docker.io/library/app:latest"). Users see and type the familiar
// form ("app:latest"); both resolve.

const dockerHub = "docker.io"

// NormalizeName turns an image name as a user writes it ("app", "app:v1",
// "127.0.0.1:5000/busybox") into its full form ("docker.io/library/app:latest",
// "127.0.0.1:5000/busybox:latest"). Digest references are refused: a tag names a mutable image.
func NormalizeName(s string) (string, error) {
	if strings.Contains(s, "@") {
		return "", fmt.Errorf("image name %q: a tag cannot contain a digest", s)
	}
	t, err := name.NewTag(s, name.WithDefaultTag("latest"))
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", s, err)
	}
	reg := t.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = dockerHub
	}
	return reg + "/" + t.RepositoryStr() + ":" + t.TagStr(), nil
}

// FamiliarName is the short form of a full name, as `docker images` shows it:
// "docker.io/library/app:latest" -> "app:latest", "docker.io/me/app:v1" -> "me/app:v1";
// names on other registries are unchanged.
func FamiliarName(full string) string {
	rest, ok := strings.CutPrefix(full, dockerHub+"/")
	if !ok {
		return full
	}
	if short, ok := strings.CutPrefix(rest, "library/"); ok && !strings.Contains(short, "/") {
		return short
	}
	return rest
}

// TagOf is the tag part of a full name ("docker.io/library/app:v1" -> "v1").
func TagOf(full string) string {
	i := strings.LastIndex(full, ":")
	if i < 0 || strings.Contains(full[i:], "/") {
		return "latest"
	}
	return full[i+1:]
}
