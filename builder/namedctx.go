package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"kiln/builder/fileop"
	"kiln/exporter"
)

// namedContext is a --build-context source: an image, or a directory of files.
type namedContext struct {
	img *exporter.Image
	dir string
}

// contextName normalises a reference the way BuildKit matches it against --build-context
// names: "docker.io/library/alpine:latest", "alpine:latest" and "alpine" are the same name.
func contextName(n string) string {
	n = strings.TrimPrefix(n, "docker.io/")
	n = strings.TrimPrefix(n, "library/")
	return strings.TrimSuffix(n, ":latest")
}

// namedContext returns the --build-context given for name, or nil when there is none.
func (bd *build) namedContext(ctx context.Context, name string) (*namedContext, error) {
	var value string
	found := false
	for k, v := range bd.opts.BuildContexts {
		if contextName(k) == contextName(name) {
			value, found = v, true
			break
		}
	}
	if !found {
		return nil, nil
	}
	switch {
	case strings.HasPrefix(value, "docker-image://"):
		img, err := bd.resolveImage(ctx, strings.TrimPrefix(value, "docker-image://"))
		if err != nil {
			return nil, fmt.Errorf("build context %s: %w", name, err)
		}
		return &namedContext{img: &img}, nil
	case strings.HasPrefix(value, "oci-layout://"):
		dir, ref := splitLayoutRef(strings.TrimPrefix(value, "oci-layout://"))
		desc, err := exporter.ImportLayout(ctx, bd.b.Store, dir, ref)
		if err != nil {
			return nil, fmt.Errorf("build context %s: %w", name, err)
		}
		img, _, err := exporter.Load(ctx, bd.b.Store, desc)
		if err != nil {
			return nil, fmt.Errorf("build context %s: %w", name, err)
		}
		return &namedContext{img: &img}, nil
	case strings.Contains(value, "://"):
		return nil, fmt.Errorf("build context %s: %q is not supported (use a directory, docker-image:// or oci-layout://)", name, value)
	}
	fi, err := os.Stat(value)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", name, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s: %s is not a directory", name, value)
	}
	return &namedContext{dir: value}, nil
}

// splitLayoutRef splits DIR[:TAG|@DIGEST].
func splitLayoutRef(s string) (string, string) {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return s[:i], s[i:]
	}
	slash := strings.LastIndex(s, "/")
	if i := strings.LastIndex(s, ":"); i > slash {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// fromDir starts a stage from a directory given as a named context: its files, owned by root,
// are the stage's first layer, as BuildKit makes a local context usable in FROM.
func (bd *build) fromDir(ctx context.Context, st *stageState, dir, label string) error {
	spec := fileop.Spec{SrcRoot: dir, Sources: []string{"."}, Dest: "/", Instruction: "COPY"}
	sum, err := fileop.Checksum(ctx, spec)
	if err != nil {
		return err
	}
	key := stepKey("from-dir", st.chain, sum.String())
	return bd.layerStep(ctx, st, layerStep{
		label: label, createdBy: "COPY / / # buildkit", key: key,
		work: func(ctx context.Context, root string, _ io.Writer) error {
			spec.DestRoot = root
			return fileop.Copy(ctx, spec)
		},
	})
}
