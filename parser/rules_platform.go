package parser

import (
	"fmt"
	"path"
	"regexp"
	"runtime"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The platform rules (FromPlatformFlagConstDisallowed, InvalidBaseImagePlatform) parse and print
// platforms as containerd's platforms package does; kiln does not depend on that module, so the
// part the checks need is written here.

var (
	platformOSRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)((?:\+[A-Za-z0-9_.-]+)*)\))?$`)
	})
	platformComponentRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]+$`) })
)

// nativePlatform is the platform kiln builds for: the checks' target and build platform.
func nativePlatform() ocispec.Platform {
	return ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
}

func knownOS(os string) bool {
	switch os {
	case "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos":
		return true
	}
	return false
}

func knownArch(arch string) bool {
	switch arch {
	case "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm":
		return true
	}
	return false
}

func normalizeOS(os string) string {
	if os == "" {
		return runtime.GOOS
	}
	os = strings.ToLower(os)
	if os == "macos" {
		return "darwin"
	}
	return os
}

func normalizeArch(arch, variant string) (string, string) {
	arch, variant = strings.ToLower(arch), strings.ToLower(variant)
	switch arch {
	case "i386":
		return "386", ""
	case "x86_64", "x86-64", "amd64":
		if variant == "v1" {
			variant = ""
		}
		return "amd64", variant
	case "aarch64", "arm64":
		switch variant {
		case "8", "v8", "v8.0":
			variant = ""
		case "9", "9.0", "v9.0":
			variant = "v9"
		}
		return "arm64", variant
	case "armhf":
		return "arm", "v7"
	case "armel":
		return "arm", "v6"
	case "arm":
		switch variant {
		case "", "7":
			variant = "v7"
		case "5", "6", "8":
			variant = "v" + variant
		}
	}
	return arch, variant
}

// parsePlatform parses a platform specifier such as linux/arm64/v8 or amd64.
func parsePlatform(spec string) (ocispec.Platform, error) {
	var p ocispec.Platform
	if strings.Contains(spec, "*") {
		return p, fmt.Errorf("%q: wildcards not yet supported: invalid argument", spec)
	}
	parts := strings.SplitN(spec, "/", 4)
	m := platformOSRe().FindStringSubmatch(parts[0])
	if m == nil {
		return p, fmt.Errorf("%q is an invalid OS component of %q: invalid argument", parts[0], spec)
	}
	p.OS = normalizeOS(m[1])
	p.OSVersion = m[2]
	for _, part := range parts[1:] {
		if !platformComponentRe().MatchString(part) {
			return ocispec.Platform{}, fmt.Errorf("%q is an invalid component of %q: invalid argument", part, spec)
		}
	}
	switch len(parts) {
	case 1:
		if knownOS(p.OS) {
			p.Architecture = runtime.GOARCH
			return p, nil
		}
		p.Architecture, p.Variant = normalizeArch(parts[0], "")
		if p.Architecture == "arm" && p.Variant == "v7" {
			p.Variant = ""
		}
		if knownArch(p.Architecture) {
			p.OS = runtime.GOOS
			return p, nil
		}
		return ocispec.Platform{}, fmt.Errorf("%q: unknown operating system or architecture: invalid argument", spec)
	case 2:
		p.Architecture, p.Variant = normalizeArch(parts[1], "")
		if p.Architecture == "arm" && p.Variant == "v7" {
			p.Variant = ""
		}
		return p, nil
	case 3:
		p.Architecture, p.Variant = normalizeArch(parts[1], parts[2])
		if p.Architecture == "arm64" && p.Variant == "" {
			p.Variant = "v8"
		}
		return p, nil
	}
	return ocispec.Platform{}, fmt.Errorf("%q: cannot parse platform specifier: invalid argument", spec)
}

// formatPlatform prints os/arch[/variant], as platforms.Format does.
func formatPlatform(p ocispec.Platform) string {
	if p.OS == "" {
		return "unknown"
	}
	return path.Join(p.OS, p.Architecture, p.Variant)
}

// formatPlatformAll also prints the OS version, as platforms.FormatAll does.
func formatPlatformAll(p ocispec.Platform) string {
	if p.OS == "" {
		return "unknown"
	}
	os := p.OS
	if p.OSVersion != "" || len(p.OSFeatures) > 0 {
		os += "(" + p.OSVersion
		if len(p.OSFeatures) > 0 {
			os += "+" + strings.Join(p.OSFeatures, "+")
		}
		os += ")"
	}
	return path.Join(os, p.Architecture, p.Variant)
}

func normalizePlatform(p ocispec.Platform) ocispec.Platform {
	p.OS = normalizeOS(p.OS)
	p.Architecture, p.Variant = normalizeArch(p.Architecture, p.Variant)
	return p
}
