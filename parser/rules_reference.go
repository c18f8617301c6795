package parser

import (
	"errors"
	"regexp"
	"strings"
	"sync"
)

// The image reference grammar of the distribution project (name[:tag][@digest], a lowercase
// path, an optional registry host), written here from its specification: the checks need to
// tell a valid base image name from an invalid one as BuildKit does.
var (
	refDomainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	refDomain          = `(?:` + refDomainComponent + `(?:\.` + refDomainComponent + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
	refPathComponent   = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
	refTag             = `[\w][\w.-]{0,127}`
	refDigest          = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
	refRe              = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^((?:` + refDomain + `/)?` + refPathComponent + `(?:/` + refPathComponent + `)*)(?::(` + refTag + `))?(?:@(` + refDigest + `))?$`)
	})
	refHex64Re = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-f0-9]{64}$`) })
)

var errRefFormat = errors.New("invalid reference format")

// splitDomain splits a name into its registry and the path there, Docker Hub names gaining
// docker.io and library/ as Docker normalizes them.
func splitDomain(name string) (domain, remote string) {
	first, rest, ok := strings.Cut(name, "/")
	switch {
	case !ok:
		return "docker.io", "library/" + name
	case first == "localhost" || strings.ContainsAny(first, ".:") || strings.ToLower(first) != first:
		domain, remote = first, rest
	case first == "index.docker.io":
		domain, remote = "docker.io", rest
	default:
		domain, remote = "docker.io", name
	}
	if domain == "docker.io" && !strings.Contains(remote, "/") {
		remote = "library/" + remote
	}
	return domain, remote
}

// validateReference tells whether s is an image reference Docker accepts, with the error
// Docker gives otherwise.
func validateReference(s string) error {
	if refHex64Re().MatchString(s) {
		return errors.New("invalid repository name (" + s + "), cannot specify 64-byte hexadecimal strings")
	}
	domain, remainder := splitDomain(s)
	remote, _, _ := strings.Cut(remainder, ":")
	if strings.ToLower(remote) != remote {
		return errors.New("invalid reference format: repository name (" + remote + ") must be lowercase")
	}
	full := domain + "/" + remainder
	m := refRe().FindStringSubmatch(full)
	if m == nil {
		if refRe().MatchString(strings.ToLower(full)) {
			return errors.New("repository name must be lowercase")
		}
		return errRefFormat
	}
	if _, p, _ := strings.Cut(m[1], "/"); len(p) > 255 {
		return errors.New("repository name must not be more than 255 characters")
	}
	return nil
}
