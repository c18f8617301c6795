package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"kiln/builder/fileop"
	"kiln/exporter"
	"kiln/snapshot"
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

// errLaterStage is a from= naming a stage defined after the one that uses it.
var errLaterStage = errors.New("stage defined after the current one")

// fromSource is what a COPY --from= or a RUN --mount from= names: the layers of a stage or an
// image, or a local directory (the build context, or one given as a named build context).
type fromSource struct {
	layers []snapshot.Layer
	dir    string         // a local directory, whose files are sent as the context's are
	ignore *fileop.Ignore // its .dockerignore (the main context's only)
}

func (s fromSource) local() bool { return s.dir != "" }

// resolveFrom resolves from (empty: the build context) for a step of stage st: a named build
// context first, then an earlier stage by name or index, then an image reference.
func (bd *build) resolveFrom(ctx context.Context, st *stageState, from string) (fromSource, error) {
	if from == "" {
		return fromSource{dir: bd.opts.ContextDir, ignore: bd.ignore}, nil
	}
	nc, err := bd.namedContext(ctx, from)
	if err != nil {
		return fromSource{}, err
	}
	switch {
	case nc != nil && nc.dir != "":
		return fromSource{dir: nc.dir}, nil
	case nc != nil:
		return fromSource{layers: nc.img.Layers}, nil
	}
	if j, ok := bd.stageIndex(from, st.index); ok {
		src, err := bd.stage(ctx, j)
		if err != nil {
			return fromSource{}, err
		}
		return fromSource{layers: src.layers}, nil
	}
	if _, ok := bd.stageIndexAny(from); ok {
		return fromSource{}, errLaterStage
	}
	img, err := bd.resolveImage(ctx, from)
	if err != nil {
		return fromSource{}, err
	}
	return fromSource{layers: img.Layers}, nil
}
