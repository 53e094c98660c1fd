package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
)

// Sequential is a stack of layers built from a Spec. See the package doc for what is safe to
// call concurrently.
type Sequential struct {
	spec   Spec
	layers []layer
	params []*Param // named "layers.{i}.{name}", sharing Data with the layers
	seed   uint64
	runs   sync.Pool // *run for inference
}

// run is one caller's set of layer states.
type run []state

func newSequential(spec Spec, layers []layer, seed uint64) *Sequential {
	m := &Sequential{spec: spec, layers: layers, seed: seed}
	for i, l := range layers {
		for _, p := range l.params() {
			m.params = append(m.params, &Param{Name: "layers." + strconv.Itoa(i) + "." + p.Name, Shape: p.Shape, Data: p.Data})
		}
	}
	return m
}

// inferenceRun takes a run for inference from the pool, or makes one; put it back with
// m.runs.Put.
func (m *Sequential) inferenceRun() *run {
	if rp, ok := m.runs.Get().(*run); ok {
		return rp
	}
	r := m.newRun(env{rng: rand.New(rand.NewPCG(m.seed, 0))})
	return &r
}

func (m *Sequential) newRun(e env) run {
	r := make(run, len(m.layers))
	for i, l := range m.layers {
		r[i] = l.newState(e)
	}
	return r
}

// Spec returns the architecture the model was built from.
func (m *Sequential) Spec() Spec { return m.spec }

// InputShape is the shape of one input sample.
func (m *Sequential) InputShape() []int { return slices.Clone(m.spec.Input) }

// OutputShape is the shape of one output sample.
func (m *Sequential) OutputShape() []int { return slices.Clone(m.layers[len(m.layers)-1].outShape()) }

// Params returns the parameter tensors in flat-vector order, named "layers.{i}.{name}". Their
// Data slices are the model's own: writing them changes the model.
func (m *Sequential) Params() []*Param { return m.params }

// NumParams is the length of the flat parameter vector.
func (m *Sequential) NumParams() int {
	n := 0
	for _, p := range m.params {
		n += len(p.Data)
	}
	return n
}

// Flat appends all parameters, in Params order, to dst and returns the result.
func (m *Sequential) Flat(dst []float32) []float32 {
	dst = slices.Grow(dst, m.NumParams())
	for _, p := range m.params {
		dst = append(dst, p.Data...)
	}
	return dst
}

// SetFlat overwrites all parameters from v, in Params order.
func (m *Sequential) SetFlat(v []float32) error {
	if len(v) != m.NumParams() {
		return fmt.Errorf("flat parameter vector has %d values, want %d for this architecture", len(v), m.NumParams())
	}
	for _, p := range m.params {
		v = v[copy(p.Data, v):]
	}
	return nil
}

// Clone returns an independent copy of the model with the same weights.
func (m *Sequential) Clone() *Sequential {
	c, err := Build(m.spec, m.seed)
	if err != nil {
		panic("model: rebuilding a valid spec failed: " + err.Error())
	}
	if err := c.SetFlat(m.Flat(nil)); err != nil {
		panic(err)
	}
	return c
}

// predictBatch bounds the memory one inference call uses.
const predictBatch = 256

// Predict returns the model's outputs (class probabilities for a softmax classifier) for n
// samples stored contiguously in x. It is safe for concurrent use.
func (m *Sequential) Predict(x []float32, n int) []float32 {
	in, out := prod(m.spec.Input), prod(m.OutputShape())
	if len(x) != n*in {
		panic(fmt.Sprintf("model: Predict got %d values for %d samples of %d", len(x), n, in))
	}
	rp := m.inferenceRun()
	defer m.runs.Put(rp)
	r := *rp
	y := make([]float32, n*out)
	for lo := 0; lo < n; lo += predictBatch {
		hi := min(lo+predictBatch, n)
		h := x[lo*in : hi*in]
		for _, s := range r {
			h = s.forward(h, hi-lo, false)
		}
		copy(y[lo*out:], h)
	}
	return y
}

// InputGradients returns, for each of the n samples in x, the gradient of the model's output
// for the given class (a probability, for a softmax classifier) with respect to the sample's
// input values: the raw material of saliency maps, gradient × input and integrated gradients.
// Dropout is off, as at inference. It is safe for concurrent use.
func (m *Sequential) InputGradients(x []float32, n int, class []int) ([]float32, error) {
	in, out := prod(m.spec.Input), prod(m.OutputShape())
	if len(x) != n*in || len(class) != n {
		return nil, fmt.Errorf("input gradients of %d values and %d classes for %d samples of %d values", len(x), len(class), n, in)
	}
	for i, c := range class {
		if c < 0 || c >= out {
			return nil, fmt.Errorf("class %d of sample %d outside [0, %d)", c, i, out)
		}
	}
	rp := m.inferenceRun()
	defer m.runs.Put(rp)
	r := *rp
	grads := make([][][]float32, len(m.layers)) // parameter gradients are computed and dropped
	for i, l := range m.layers {
		for _, p := range l.params() {
			grads[i] = append(grads[i], make([]float32, len(p.Data)))
		}
	}
	g := make([]float32, n*in)
	for lo := 0; lo < n; lo += predictBatch {
		hi := min(lo+predictBatch, n)
		h := x[lo*in : hi*in]
		for _, s := range r {
			h = s.forward(h, hi-lo, false)
		}
		dy := make([]float32, len(h))
		for i := lo; i < hi; i++ {
			dy[(i-lo)*out+class[i]] = 1
		}
		for i := len(r) - 1; i >= 0; i-- {
			dy = r[i].backward(dy, grads[i], true)
		}
		copy(g[lo*in:], dy)
	}
	return g, nil
}

// Evaluate returns the mean loss and the accuracy of the model on n samples with targets y.
// Accuracy is the share of argmax predictions equal to the class target (for a single sigmoid
// output, of thresholded predictions); it is 0 for mean squared error. Safe for concurrent use.
func (m *Sequential) Evaluate(x, y []float32, n int, loss string) (meanLoss, accuracy float64, err error) {
	fn, _, err := lossByName(loss)
	if err != nil {
		return 0, 0, err
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("evaluate on an empty set")
	}
	out := prod(m.OutputShape())
	if err := checkTargets(loss, y, n, out); err != nil {
		return 0, 0, err
	}
	p := m.Predict(x, n)
	grad := make([]float32, len(p))
	meanLoss = fn(grad, p, y, n, false)
	return meanLoss, float64(countCorrect(loss, p, y, n, false)) / float64(n), nil
}

// checkTargets validates targets against the loss and output width, so bad labels from a file
// are an error rather than a panic deep in a loss function.
func checkTargets(loss string, y []float32, n, out int) error {
	switch loss {
	case SparseCategoricalCrossentropy, "":
		if len(y) != n {
			return fmt.Errorf("%d targets for %d samples", len(y), n)
		}
		for i, v := range y {
			if v != float32(int(v)) || v < 0 || int(v) >= out {
				return fmt.Errorf("target %d is %v, want a class index in [0, %d)", i, v, out)
			}
		}
	case BinaryCrossentropy:
		if len(y) != n*out {
			return fmt.Errorf("%d targets for %d samples of %d outputs", len(y), n, out)
		}
		for i, v := range y {
			if !(v >= 0 && v <= 1) {
				return fmt.Errorf("target %d is %v, want a value in [0, 1]", i, v)
			}
		}
	case MeanSquaredError:
		if len(y) != n*out {
			return fmt.Errorf("%d targets for %d samples of %d outputs", len(y), n, out)
		}
	}
	return nil
}

// countCorrect counts correct classifications in a batch of outputs (logits when fromLogits).
func countCorrect(loss string, out, y []float32, n int, fromLogits bool) int {
	width := len(out) / n
	correct := 0
	switch loss {
	case SparseCategoricalCrossentropy, "":
		for i := 0; i < n; i++ {
			row := out[i*width : (i+1)*width]
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			if float32(best) == y[i] {
				correct++
			}
		}
	case BinaryCrossentropy:
		if width != 1 {
			return 0
		}
		threshold := float32(0.5)
		if fromLogits {
			threshold = 0
		}
		for i, v := range out {
			if (v > threshold) == (y[i] > 0.5) {
				correct++
			}
		}
	}
	return correct
}
