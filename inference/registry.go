package inference

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medfed/medfed/model"
)

// ModelMeta is what the registry knows about a model beyond its weights.
type ModelMeta struct {
	// FeatureNames names the input values of a tabular model, in order; explanations are
	// then also reported by feature name. Leave it nil for images and sequences.
	FeatureNames []string
	// ClassNames names the output classes, in order (optional).
	ClassNames []string
}

// ServedModel is one published version of a model together with its batcher. It is
// immutable and safe for concurrent use; a request that looked it up keeps using it to the
// end even if a newer version is published or this one is retired meanwhile.
type ServedModel struct {
	name      string
	version   uint64
	m         *model.Sequential
	meta      ModelMeta
	published time.Time
	inShape   []int
	inSize    int
	classes   int
	b         *batcher
}

// Name is the model's name (the federation name).
func (s *ServedModel) Name() string { return s.name }

// Version is the model version (the round that produced it).
func (s *ServedModel) Version() uint64 { return s.version }

// Model is the network itself. Callers must not modify it.
func (s *ServedModel) Model() *model.Sequential { return s.m }

// Meta returns the model's metadata.
func (s *ServedModel) Meta() ModelMeta { return s.meta }

// Predict returns the model outputs for n samples in x (row-major, each of the model's
// input size), batched with concurrent callers of the same version. x must have been
// validated (DecodeInput does); a length mismatch is reported as ErrInvalidInput.
func (s *ServedModel) Predict(ctx context.Context, x []float32, n int) ([]float32, error) {
	if n < 1 || len(x) != n*s.inSize {
		return nil, fmt.Errorf("%w: %d values for %d samples of %d", ErrInvalidInput, len(x), n, s.inSize)
	}
	return s.b.predict(ctx, x, n)
}

// modelSet is the immutable state of one model name: its loaded versions, ascending.
type modelSet struct {
	versions []*ServedModel
}

func (ms *modelSet) latest() *ServedModel { return ms.versions[len(ms.versions)-1] }

func (ms *modelSet) find(v uint64) *ServedModel {
	i, ok := slices.BinarySearchFunc(ms.versions, v, func(s *ServedModel, v uint64) int { return cmp.Compare(s.version, v) })
	if !ok {
		return nil
	}
	return ms.versions[i]
}

// Registry holds the published models by name and version and serves the newest version of
// each name by default. It is safe for concurrent use: lookups read an immutable snapshot
// through an atomic pointer, so switching the default version is one atomic store and never
// blocks or fails a request in flight; writers (Publish, Pin, Unpin, Close) copy the
// snapshot under a mutex.
//
// Each model name keeps its Config.Retain newest versions plus every pinned version loaded;
// older ones are retired when a newer version is published or a pin is removed.
type Registry struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu     sync.Mutex                 // serialises writers
	pins   map[string]map[uint64]bool // pinned versions by name; guarded by mu
	closed atomic.Bool
	models atomic.Pointer[map[string]*modelSet]
	wg     sync.WaitGroup // batcher goroutines
}

// NewRegistry returns an empty registry. A nil logger discards logs.
func NewRegistry(cfg Config, logger *slog.Logger) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{cfg: cfg.withDefaults(), log: logger, metrics: newMetrics(), pins: map[string]map[uint64]bool{}}
	empty := map[string]*modelSet{}
	r.models.Store(&empty)
	return r, nil
}

// Publish makes version of the model name available. If it is the newest version of name
// it becomes the default at once; requests already running finish on the version they
// started with. Publishing a version the registry already holds fails with
// ErrVersionExists. The registry keeps m and reads it concurrently: the caller must not
// modify it afterwards.
func (r *Registry) Publish(name string, version uint64, m *model.Sequential, meta ModelMeta) error {
	if name == "" {
		return fmt.Errorf("%w: empty model name", ErrInvalidInput)
	}
	if m == nil {
		return fmt.Errorf("inference: publish %s version %d: nil model", name, version)
	}
	in := m.InputShape()
	out := m.OutputShape()
	if len(out) != 1 || out[0] < 1 {
		return fmt.Errorf("inference: publish %s version %d: output shape %v, want [classes]", name, version, out)
	}
	if meta.FeatureNames != nil && len(meta.FeatureNames) != prod(in) {
		return fmt.Errorf("inference: publish %s version %d: %d feature names for input shape %v", name, version, len(meta.FeatureNames), in)
	}
	if meta.ClassNames != nil && len(meta.ClassNames) != out[0] {
		return fmt.Errorf("inference: publish %s version %d: %d class names for %d classes", name, version, len(meta.ClassNames), out[0])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return ErrClosed
	}
	old := *r.models.Load()
	ms := &modelSet{}
	if prev := old[name]; prev != nil {
		if prev.find(version) != nil {
			return fmt.Errorf("%w: %s version %d", ErrVersionExists, name, version)
		}
		ms.versions = slices.Clone(prev.versions)
	}
	s := &ServedModel{
		name: name, version: version, m: m, meta: meta, published: time.Now(),
		inShape: in, inSize: prod(in), classes: out[0],
	}
	s.b = newBatcher(m, r.cfg, &r.wg, r.metrics.batch)
	i, _ := slices.BinarySearchFunc(ms.versions, version, func(s *ServedModel, v uint64) int { return cmp.Compare(s.version, v) })
	ms.versions = slices.Insert(ms.versions, i, s)
	r.store(old, name, r.retain(name, ms))
	r.log.Info("model published", "model", name, "version", version, "default", ms.latest().version)
	return nil
}

// retain retires versions beyond the newest Retain that are not pinned. Callers hold r.mu.
func (r *Registry) retain(name string, ms *modelSet) *modelSet {
	keep := ms.versions[:0:0]
	for i, s := range ms.versions {
		if i >= len(ms.versions)-r.cfg.Retain || r.pins[name][s.version] {
			keep = append(keep, s)
			continue
		}
		s.b.retire()
		r.log.Info("model version retired", "model", name, "version", s.version)
	}
	ms.versions = keep
	return ms
}

// store replaces one model set in a copy of the snapshot. Callers hold r.mu.
func (r *Registry) store(old map[string]*modelSet, name string, ms *modelSet) {
	next := maps.Clone(old)
	next[name] = ms
	r.models.Store(&next)
}

// Pin keeps version of name loaded however many newer versions are published. A version
// may be pinned before it is published: Publish then keeps it even if it is older than the
// Retain newest versions (that is how an older version is brought back). Pinning a retired
// version does not reload it.
func (r *Registry) Pin(name string, version uint64) error { return r.setPin(name, version, true) }

// Unpin undoes Pin; the version is retired at once if it is outside the retention window.
// Unpinning a version that is not pinned does nothing.
func (r *Registry) Unpin(name string, version uint64) error { return r.setPin(name, version, false) }

func (r *Registry) setPin(name string, version uint64, pin bool) error {
	if name == "" {
		return fmt.Errorf("%w: empty model name", ErrInvalidInput)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return ErrClosed
	}
	if pin {
		if r.pins[name] == nil {
			r.pins[name] = map[uint64]bool{}
		}
		r.pins[name][version] = true
		return nil
	}
	delete(r.pins[name], version)
	old := *r.models.Load()
	if prev := old[name]; prev != nil && prev.find(version) != nil {
		r.store(old, name, r.retain(name, &modelSet{versions: slices.Clone(prev.versions)}))
	}
	return nil
}

// Latest returns the default (newest) version of name.
func (r *Registry) Latest(name string) (*ServedModel, error) {
	ms, err := r.set(name)
	if err != nil {
		return nil, err
	}
	return ms.latest(), nil
}

// Version returns one loaded version of name.
func (r *Registry) Version(name string, version uint64) (*ServedModel, error) {
	ms, err := r.set(name)
	if err != nil {
		return nil, err
	}
	s := ms.find(version)
	if s == nil {
		return nil, fmt.Errorf("%w: %s has no loaded version %d (loaded: %s)", ErrVersionNotFound, name, version, versionList(ms))
	}
	return s, nil
}

// Lookup resolves a protocol version string: "" is the default version, otherwise a decimal
// version number.
func (r *Registry) Lookup(name, version string) (*ServedModel, error) {
	if version == "" {
		return r.Latest(name)
	}
	v, err := strconv.ParseUint(version, 10, 64)
	if err != nil {
		if _, err := r.set(name); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s has no version %q (versions are decimal round numbers)", ErrVersionNotFound, name, version)
	}
	return r.Version(name, v)
}

// Versions lists the loaded versions of name, ascending.
func (r *Registry) Versions(name string) ([]uint64, error) {
	ms, err := r.set(name)
	if err != nil {
		return nil, err
	}
	vs := make([]uint64, len(ms.versions))
	for i, s := range ms.versions {
		vs[i] = s.version
	}
	return vs, nil
}

// Names lists the published model names, sorted.
func (r *Registry) Names() []string {
	return slices.Sorted(maps.Keys(*r.models.Load()))
}

// Ready reports whether the registry serves at least one model and is not closed.
func (r *Registry) Ready() bool {
	return !r.closed.Load() && len(*r.models.Load()) > 0
}

func (r *Registry) set(name string) (*modelSet, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	ms := (*r.models.Load())[name]
	if ms == nil {
		return nil, fmt.Errorf("%w: %q", ErrModelNotFound, name)
	}
	return ms, nil
}

// Close retires every version and waits, until ctx is done, for the batchers to finish the
// requests they hold. Requests that looked a version up before Close still complete (they
// run inline); new lookups fail with ErrClosed.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	if !r.closed.Swap(true) {
		for _, ms := range *r.models.Load() {
			for _, s := range ms.versions {
				s.b.retire()
			}
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("inference: close: %w", ctx.Err())
	}
}

func versionList(ms *modelSet) string {
	s := ""
	for i, v := range ms.versions {
		if i > 0 {
			s += ", "
		}
		s += strconv.FormatUint(v.version, 10)
	}
	return s
}
