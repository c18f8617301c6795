package exporter

import (
	"encoding/csv"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

var validTypes = []string{TypeOCI, TypeDocker, TypeLocal, TypeTar, TypeImage, "registry"}

// ParseOutput parses "type=oci,dest=out.tar[,tar=false][,key=value...]", the syntax of
// `docker buildx build -o`: comma-separated key=value pairs (CSV quoting allowed). A value with
// no "=" is a destination: a bare path means type=local, "-" means a tar on stdout.
// type=registry is type=image with push=true.
func ParseOutput(s string) (Output, error) {
	out := Output{Tar: true, Attrs: map[string]string{}}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, fmt.Errorf("output: empty value; want type=%s,dest=PATH", strings.Join(validTypes, "|"))
	}
	if !strings.Contains(s, "=") {
		out.Dest = s
		out.Type = TypeLocal
		if s == "-" {
			out.Type = TypeTar
		}
		return out, nil
	}
	r := csv.NewReader(strings.NewReader(s))
	fields, err := r.Read()
	if err != nil {
		return out, fmt.Errorf("output %q: %w", s, err)
	}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			return out, fmt.Errorf("output %q: %q is not key=value", s, f)
		}
		switch k {
		case "type":
			out.Type = v
		case "dest":
			out.Dest = v
		case "tar":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return out, fmt.Errorf("output %q: tar=%q: want true or false", s, v)
			}
			out.Tar = b
		default:
			out.Attrs[k] = v
		}
	}
	if out.Type == "registry" {
		out.Type = TypeImage
		out.Attrs["push"] = "true"
	}
	switch out.Type {
	case "":
		return out, fmt.Errorf("output %q: no type; valid types: %s", s, strings.Join(validTypes, ", "))
	case TypeOCI, TypeDocker, TypeTar:
		if out.Dest == "" {
			return out, fmt.Errorf("output %q: type=%s needs dest=FILE (or dest=- for stdout)", s, out.Type)
		}
	case TypeLocal:
		if out.Dest == "" || out.Dest == "-" {
			return out, fmt.Errorf("output %q: type=local needs dest=DIRECTORY", s)
		}
	case TypeImage:
		if out.Dest != "" {
			return out, fmt.Errorf("output %q: type=image takes name=..., not dest", s)
		}
	default:
		return out, fmt.Errorf("output %q: unknown type %q; valid types: %s", s, out.Type, strings.Join(validTypes, ", "))
	}
	if !out.Tar && out.Dest == "-" {
		return out, fmt.Errorf("output %q: tar=false writes a directory, it cannot go to stdout", s)
	}
	if !out.Tar && out.Type != TypeOCI && out.Type != TypeDocker {
		return out, fmt.Errorf("output %q: tar=false applies to type=oci and type=docker only", s)
	}
	return out, nil
}

// String writes o back in ParseOutput's syntax.
func (o Output) String() string {
	parts := []string{"type=" + o.Type}
	if o.Dest != "" {
		parts = append(parts, "dest="+o.Dest)
	}
	if !o.Tar {
		parts = append(parts, "tar=false")
	}
	keys := make([]string, 0, len(o.Attrs))
	for k := range o.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+o.Attrs[k])
	}
	return strings.Join(parts, ",")
}
