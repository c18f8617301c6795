package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"kiln/cache"
	"kiln/snapshot"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// layerStep is a step that changes files: RUN, COPY, ADD, WORKDIR.
type layerStep struct {
	label     string
	createdBy string
	key       digest.Digest
	// work changes the files of the step's snapshot, mounted at root.
	work func(ctx context.Context, root string, out io.Writer) error
	// parentless steps (COPY --link) work on an empty snapshot: their layer does not depend on
	// the stage's files and is stacked on them afterwards.
	parentless bool
}

// layerStep takes the step's result from the cache, or runs it over a new snapshot and commits
// what it changed as a layer.
func (bd *build) layerStep(ctx context.Context, st *stageState, s layerStep) error {
	step := bd.progress.start(s.label)
	if !bd.opts.NoCache && !st.noCache {
		rec, err := bd.b.Store.GetStep(s.key)
		if err == nil && (rec.Layer == nil || bd.b.Store.Has(rec.Layer.Digest)) {
			st.addLayer(rec.Layer, s.chainAfter(st, rec), rec.Created, s.createdBy)
			bd.countStep(true)
			step.cached()
			return nil
		}
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return fmt.Errorf("read cache record: %w", err)
		}
	}
	rec, err := bd.execute(ctx, st, s, step)
	if err != nil {
		step.fail(err)
		return err
	}
	st.addLayer(rec.Layer, s.chainAfter(st, rec), rec.Created, s.createdBy)
	bd.countStep(false)
	step.done()
	return nil
}

func (bd *build) execute(ctx context.Context, st *stageState, s layerStep, step *stepProgress) (cache.StepRecord, error) {
	select {
	case bd.sem <- struct{}{}:
	case <-ctx.Done():
		return cache.StepRecord{}, ctx.Err()
	}
	defer func() { <-bd.sem }()

	parent := ""
	if !s.parentless {
		var err error
		if parent, err = bd.ensureChain(ctx, st.layers); err != nil {
			return cache.StepRecord{}, err
		}
	}
	snaps := bd.b.Snaps
	active, err := snaps.Prepare(ctx, parent)
	if err != nil {
		return cache.StepRecord{}, fmt.Errorf("prepare snapshot: %w", err)
	}
	out := step.output()
	err = s.work(ctx, active.Root, out)
	out.flush()
	if err != nil {
		if aerr := snaps.Abort(context.WithoutCancel(ctx), active); aerr != nil {
			err = errors.Join(err, fmt.Errorf("remove snapshot: %w", aerr))
		}
		return cache.StepRecord{}, err
	}
	w, err := bd.b.Store.NewWriter()
	if err != nil {
		_ = snaps.Abort(context.WithoutCancel(ctx), active)
		return cache.StepRecord{}, err
	}
	defer w.Close()
	layer, chain, err := snaps.Commit(ctx, active, w, bd.opts.Layer)
	if err != nil {
		return cache.StepRecord{}, fmt.Errorf("commit snapshot: %w", err)
	}
	// A step that changed nothing still makes a layer (an empty tar), as BuildKit's do.
	if _, _, err := w.Commit(layer.Digest); err != nil {
		return cache.StepRecord{}, fmt.Errorf("store layer: %w", err)
	}
	rec := cache.StepRecord{Layer: &layer, ChainID: chain, Created: time.Now().UTC().Truncate(time.Second)}
	if err := bd.b.Store.PutStep(s.key, rec); err != nil {
		return cache.StepRecord{}, fmt.Errorf("record step: %w", err)
	}
	return rec, nil
}

// ensureChain makes sure the snapshot of layers exists.
func (bd *build) ensureChain(ctx context.Context, layers []snapshot.Layer) (string, error) {
	return Materialize(ctx, bd.b.Store, bd.b.Snaps, layers)
}

// Materialize makes sure the snapshot of layers exists, unpacking from their blobs the layers
// whose snapshots are missing (pulled base images, records whose snapshots were pruned), and
// returns its chain ID.
func Materialize(ctx context.Context, store *cache.Store, snaps snapshot.Snapshotter, layers []snapshot.Layer) (string, error) {
	chains := make([]string, len(layers))
	chain := ""
	for i, l := range layers {
		chain = snapshot.ChainID(chain, l.DiffID)
		chains[i] = chain
	}
	if chain == "" || snaps.Has(chain) {
		return chain, nil
	}
	k := len(layers) - 1
	for k >= 0 && !snaps.Has(chains[k]) {
		k--
	}
	for i := k + 1; i < len(layers); i++ {
		parent := ""
		if i > 0 {
			parent = chains[i-1]
		}
		if err := unpack(ctx, store, snaps, parent, layers[i]); err != nil {
			return "", err
		}
	}
	return chain, nil
}

func unpack(ctx context.Context, store *cache.Store, snaps snapshot.Snapshotter, parent string, l snapshot.Layer) error {
	f, err := store.OpenBlob(l.Digest)
	if err != nil {
		return fmt.Errorf("open layer %s: %w", l.Digest, err)
	}
	defer f.Close()
	r, err := decompress(l.MediaType, f)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer r.Close()
	if _, err := snaps.Apply(ctx, parent, l.DiffID, r); err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	return nil
}

// decompress reads a layer blob of mediaType as its uncompressed tar.
func decompress(mediaType string, r io.Reader) (io.ReadCloser, error) {
	switch mediaType {
	case "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
		return gzip.NewReader(r)
	case "application/vnd.oci.image.layer.v1.tar+zstd":
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case "application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar", "":
		return io.NopCloser(r), nil
	default:
		return nil, fmt.Errorf("unsupported layer media type %q", mediaType)
	}
}

// chainAfter is the stage's chain ID once rec's layer is on it: the record's own for a step run
// over the stage's files, the layer stacked on the stage's chain for a parentless one.
func (s layerStep) chainAfter(st *stageState, rec cache.StepRecord) string {
	if s.parentless && rec.Layer != nil {
		return snapshot.ChainID(st.chain, rec.Layer.DiffID)
	}
	return rec.ChainID
}
