package inference

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// metrics counts requests per caller, in the Prometheus text format. Safe for concurrent use.
type metrics struct {
	batches      atomic.Uint64
	batchSamples atomic.Uint64

	mu       sync.Mutex
	requests map[requestKey]*atomic.Uint64
	samples  map[string]*atomic.Uint64
}

type requestKey struct {
	caller, protocol, endpoint, code string
}

func newMetrics() *metrics {
	return &metrics{requests: map[requestKey]*atomic.Uint64{}, samples: map[string]*atomic.Uint64{}}
}

func (m *metrics) batch(samples int) {
	m.batches.Add(1)
	m.batchSamples.Add(uint64(samples))
}

func (m *metrics) request(k requestKey, samples int) {
	m.mu.Lock()
	c := m.requests[k]
	if c == nil {
		c = new(atomic.Uint64)
		m.requests[k] = c
	}
	s := m.samples[k.caller]
	if samples > 0 && s == nil {
		s = new(atomic.Uint64)
		m.samples[k.caller] = s
	}
	m.mu.Unlock()
	c.Add(1)
	if samples > 0 {
		s.Add(uint64(samples))
	}
}

// requests returns the count for one key (tests and the status page).
func (m *metrics) count(k requestKey) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.requests[k]; c != nil {
		return c.Load()
	}
	return 0
}

func (m *metrics) write(w io.Writer, reg *Registry) {
	m.mu.Lock()
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	callers := make([]string, 0, len(m.samples))
	for c := range m.samples {
		callers = append(callers, c)
	}
	m.mu.Unlock()
	slices.SortFunc(keys, func(a, b requestKey) int {
		return cmp.Or(cmp.Compare(a.caller, b.caller), cmp.Compare(a.protocol, b.protocol), cmp.Compare(a.endpoint, b.endpoint), cmp.Compare(a.code, b.code))
	})
	slices.Sort(callers)
	fmt.Fprintf(w, "# HELP medfed_inference_requests_total Inference requests by authenticated caller, protocol, endpoint and outcome.\n# TYPE medfed_inference_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "medfed_inference_requests_total{caller=\"%s\",protocol=\"%s\",endpoint=\"%s\",code=\"%s\"} %d\n", label(k.caller), k.protocol, k.endpoint, k.code, m.count(k))
	}
	fmt.Fprintf(w, "# HELP medfed_inference_samples_total Samples inferred or explained, by caller.\n# TYPE medfed_inference_samples_total counter\n")
	for _, c := range callers {
		m.mu.Lock()
		v := m.samples[c].Load()
		m.mu.Unlock()
		fmt.Fprintf(w, "medfed_inference_samples_total{caller=\"%s\"} %d\n", label(c), v)
	}
	fmt.Fprintf(w, "# HELP medfed_inference_batches_total Model executions by the batchers.\n# TYPE medfed_inference_batches_total counter\nmedfed_inference_batches_total %d\n", m.batches.Load())
	fmt.Fprintf(w, "# HELP medfed_inference_batch_samples_total Samples in those executions.\n# TYPE medfed_inference_batch_samples_total counter\nmedfed_inference_batch_samples_total %d\n", m.batchSamples.Load())
	fmt.Fprintf(w, "# HELP medfed_inference_model_versions Loaded versions per model.\n# TYPE medfed_inference_model_versions gauge\n")
	for _, name := range reg.Names() {
		vs, err := reg.Versions(name)
		if err != nil {
			continue
		}
		fmt.Fprintf(w, "medfed_inference_model_versions{model=\"%s\"} %d\n", label(name), len(vs))
	}
}

func label(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// WriteMetrics writes the per-caller request counters, the batch counters and the loaded
// versions per model in the Prometheus text format, as the Handler's GET /metrics does. A
// host that serves its own /metrics (the coordinator) appends them there.
func (s *Server) WriteMetrics(w io.Writer) { s.m.write(w, s.reg) }
