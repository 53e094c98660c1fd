package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// ErrSpec reports an architecture spec that cannot be built.
var ErrSpec = errors.New("invalid model spec")

// Limits on specs read from files or the network, so a crafted spec cannot make Build allocate
// without bound.
const (
	MaxSpecBytes  = 64 << 10
	MaxLayers     = 64
	MaxParams     = 64 << 20 // 64 Mi parameters, 256 MiB of float32
	maxDim        = 1 << 16
	maxActivation = 1 << 24 // values per sample between two layers
)

// Spec is a declarative, serialisable model architecture: the input shape of one sample and
// the layers in order. Two parties that hold equal Specs and the same flat parameter vector
// hold the same model.
type Spec struct {
	Input  []int       `json:"input"`
	Layers []LayerSpec `json:"layers"`
}

// LayerSpec describes one layer. Which fields apply depends on Type:
//
//	dense        units, activation
//	conv2d       filters, kernel [kh, kw], strides [sh, sw] (default 1), padding valid|same, activation
//	maxpool2d    pool [ph, pw], strides (default pool)
//	flatten      -
//	dropout      rate in [0, 1)
//	relu, tanh, sigmoid, softmax  -
//	simple_rnn, lstm, gru         units, activation (simple_rnn only; default tanh), return_sequences
//
// activation is one of "", "linear", "relu", "tanh", "sigmoid", "softmax"; it is built as a
// layer of its own after the layer that names it.
type LayerSpec struct {
	Type            string  `json:"type"`
	Units           int     `json:"units,omitempty"`
	Filters         int     `json:"filters,omitempty"`
	Kernel          []int   `json:"kernel,omitempty"`
	Strides         []int   `json:"strides,omitempty"`
	Padding         string  `json:"padding,omitempty"`
	Pool            []int   `json:"pool,omitempty"`
	Rate            float64 `json:"rate,omitempty"`
	Activation      string  `json:"activation,omitempty"`
	ReturnSequences bool    `json:"return_sequences,omitempty"`
}

// ParseSpec decodes and validates a JSON spec. Unknown fields are refused.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	if len(data) > MaxSpecBytes {
		return s, fmt.Errorf("%w: %d bytes, want at most %d", ErrSpec, len(data), MaxSpecBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrSpec, err)
	}
	if dec.More() {
		return Spec{}, fmt.Errorf("%w: trailing data after the JSON object", ErrSpec)
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// MarshalJSON-compatible canonical encoding: JSON with fields in declaration order.
func (s Spec) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Equal reports whether two specs describe the same architecture.
func (s Spec) Equal(o Spec) bool { return s.String() == o.String() }

// Validate checks every layer against the shape it receives and the size limits, and names
// the first problem.
func (s Spec) Validate() error {
	_, err := s.build(nil)
	return err
}

// OutputShape is the per-sample output shape of the model the spec describes.
func (s Spec) OutputShape() ([]int, error) {
	layers, err := s.build(nil)
	if err != nil {
		return nil, err
	}
	return layers[len(layers)-1].outShape(), nil
}

// Build makes a model from spec, initialising weights Keras-style from seed.
func Build(spec Spec, seed uint64) (*Sequential, error) {
	if err := spec.Validate(); err != nil { // checks sizes before anything is allocated
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d65646665642d31))
	layers, err := spec.build(rng)
	if err != nil {
		return nil, err
	}
	return newSequential(spec, layers, seed), nil
}

// build walks the spec, checking shapes. With a nil rng it only checks (parameters are not
// allocated); otherwise it returns initialised layers.
func (s Spec) build(rng *rand.Rand) ([]layer, error) {
	if err := checkShape("input", s.Input, 1, 3); err != nil {
		return nil, err
	}
	if n := cappedProd(s.Input); n > maxActivation {
		return nil, fmt.Errorf("%w: input %v has more than %d values per sample", ErrSpec, s.Input, maxActivation)
	}
	if len(s.Layers) == 0 || len(s.Layers) > MaxLayers {
		return nil, fmt.Errorf("%w: %d layers, want 1 to %d", ErrSpec, len(s.Layers), MaxLayers)
	}
	in := slices.Clone(s.Input)
	var out []layer
	params := 0
	for i, ls := range s.Layers {
		built, err := buildLayer(ls, in, rng)
		if err != nil {
			return nil, fmt.Errorf("%w: layer %d (%s): %v", ErrSpec, i, ls.Type, err)
		}
		for _, l := range built {
			for _, p := range l.params() {
				params += cappedProd(p.Shape)
			}
			in = l.outShape()
			if cappedProd(in) > maxActivation {
				return nil, fmt.Errorf("%w: layer %d (%s) outputs %v = %d values per sample, want at most %d", ErrSpec, i, ls.Type, in, prod(in), maxActivation)
			}
		}
		if params > MaxParams {
			return nil, fmt.Errorf("%w: %d parameters after layer %d, want at most %d", ErrSpec, params, i, MaxParams)
		}
		out = append(out, built...)
	}
	return reorderPooling(out), nil
}

// reorderPooling rewrites conv2d → relu → maxpool2d as conv2d → maxpool2d → relu. ReLU is
// monotonic, so max(relu(x)) = relu(max(x)) and the gradients agree; pooling first applies
// the activation to a quarter as many values (for 2x2 pools). Parameter names do not change,
// because neither moved layer has parameters.
func reorderPooling(layers []layer) []layer {
	for i := 0; i+2 < len(layers); i++ {
		if layers[i].kind() != "conv2d" || layers[i+1].kind() != "relu" || layers[i+2].kind() != "maxpool2d" {
			continue
		}
		pool := layers[i+2]
		layers[i+1], layers[i+2] = pool, newActivation("relu", pool.outShape())
	}
	return layers
}

// cappedProd is the product of shape, saturating at MaxParams+1 so that crafted dimensions
// cannot overflow it.
func cappedProd(shape []int) int {
	p := 1
	for _, d := range shape {
		if d <= 0 {
			return 0
		}
		if p > (MaxParams+1)/d {
			return MaxParams + 1
		}
		p *= d
	}
	return p
}

func checkShape(what string, shape []int, minRank, maxRank int) error {
	if len(shape) < minRank || len(shape) > maxRank {
		return fmt.Errorf("%w: %s shape %v has rank %d, want %d to %d", ErrSpec, what, shape, len(shape), minRank, maxRank)
	}
	for _, d := range shape {
		if d < 1 || d > maxDim {
			return fmt.Errorf("%w: %s shape %v: dimensions must be in [1, %d]", ErrSpec, what, shape, maxDim)
		}
	}
	return nil
}

func positive(name string, v int) error {
	if v < 1 || v > maxDim {
		return fmt.Errorf("%s = %d, want 1 to %d", name, v, maxDim)
	}
	return nil
}

func pair(name string, v []int, def []int) ([2]int, error) {
	if len(v) == 0 && def != nil {
		v = def
	}
	if len(v) != 2 {
		return [2]int{}, fmt.Errorf("%s = %v, want two values", name, v)
	}
	for _, d := range v {
		if d < 1 || d > maxDim {
			return [2]int{}, fmt.Errorf("%s = %v, want values in [1, %d]", name, v, maxDim)
		}
	}
	return [2]int{v[0], v[1]}, nil
}

// buildLayer returns the layer (and its separate activation layer, if any).
func buildLayer(ls LayerSpec, in []int, rng *rand.Rand) ([]layer, error) {
	var l layer
	fusedAct := ls.Activation
	switch ls.Type {
	case "dense":
		if len(in) != 1 {
			return nil, fmt.Errorf("input shape %v, want one dimension (add a flatten layer)", in)
		}
		if err := positive("units", ls.Units); err != nil {
			return nil, err
		}
		l = newDense(in[0], ls.Units, rng)
	case "conv2d":
		if len(in) != 3 {
			return nil, fmt.Errorf("input shape %v, want [height, width, channels]", in)
		}
		if err := positive("filters", ls.Filters); err != nil {
			return nil, err
		}
		k, err := pair("kernel", ls.Kernel, nil)
		if err != nil {
			return nil, err
		}
		st, err := pair("strides", ls.Strides, []int{1, 1})
		if err != nil {
			return nil, err
		}
		pad := ls.Padding
		if pad == "" {
			pad = "valid"
		}
		if pad != "valid" && pad != "same" {
			return nil, fmt.Errorf("padding %q, want valid or same", ls.Padding)
		}
		c, err := newConv2D(in, ls.Filters, k, st, pad == "same", rng)
		if err != nil {
			return nil, err
		}
		l = c
	case "maxpool2d":
		if len(in) != 3 {
			return nil, fmt.Errorf("input shape %v, want [height, width, channels]", in)
		}
		p, err := pair("pool", ls.Pool, []int{2, 2})
		if err != nil {
			return nil, err
		}
		st, err := pair("strides", ls.Strides, p[:])
		if err != nil {
			return nil, err
		}
		mp, err := newMaxPool2D(in, p, st)
		if err != nil {
			return nil, err
		}
		l = mp
	case "flatten":
		l = &flatten{out: []int{prod(in)}}
	case "dropout":
		if !(ls.Rate >= 0 && ls.Rate < 1) {
			return nil, fmt.Errorf("rate = %v, want [0, 1)", ls.Rate)
		}
		l = &dropout{shape: slices.Clone(in), rate: ls.Rate}
	case "relu", "tanh", "sigmoid", "softmax", "linear":
		if ls.Activation != "" {
			return nil, fmt.Errorf("activation layer takes no activation field")
		}
		fusedAct = ""
		l = newActivation(ls.Type, in)
	case "simple_rnn", "lstm", "gru":
		if len(in) != 2 {
			return nil, fmt.Errorf("input shape %v, want [steps, features]", in)
		}
		if err := positive("units", ls.Units); err != nil {
			return nil, err
		}
		act := "tanh"
		if ls.Type == "simple_rnn" {
			if ls.Activation != "" {
				act = ls.Activation
			}
			if act != "tanh" && act != "relu" {
				return nil, fmt.Errorf("activation %q, want tanh or relu", act)
			}
			fusedAct = ""
		}
		r, err := newRecurrent(ls.Type, in, ls.Units, act, ls.ReturnSequences, rng)
		if err != nil {
			return nil, err
		}
		l = r
	default:
		return nil, fmt.Errorf("unknown layer type %q, want dense, conv2d, maxpool2d, flatten, dropout, relu, tanh, sigmoid, softmax, simple_rnn, lstm or gru", ls.Type)
	}
	if err := checkUnused(ls); err != nil {
		return nil, err
	}
	out := []layer{l}
	switch fusedAct {
	case "", "linear":
	case "relu", "tanh", "sigmoid", "softmax":
		out = append(out, newActivation(fusedAct, l.outShape()))
	default:
		return nil, fmt.Errorf("activation %q, want linear, relu, tanh, sigmoid or softmax", fusedAct)
	}
	return out, nil
}

// Architecture returns a named architecture from MedFed's catalogue for inputs of the given
// per-sample shape and the given number of classes:
//
//	cnn   the seed example: conv2d 32 3x3 relu, maxpool 2x2, flatten, dense 64 relu, dense softmax
//	mlp   flatten, dense 128 relu, dense 64 relu, dense softmax
//	rnn   simple_rnn 128 tanh (the seed RNN: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h)), dense softmax (y = W_hy h_T + b_y)
//	lstm  lstm 128, dense softmax
//	gru   gru 128, dense softmax
//
// Images [h, w, 1] given to a recurrent architecture are read as h steps of w features.
func Architecture(name string, input []int, classes int) (Spec, error) {
	if err := checkShape("input", input, 1, 3); err != nil {
		return Spec{}, err
	}
	if classes < 2 {
		return Spec{}, fmt.Errorf("%w: %d classes, want at least 2", ErrSpec, classes)
	}
	head := LayerSpec{Type: "dense", Units: classes, Activation: "softmax"}
	var s Spec
	s.Input = slices.Clone(input)
	switch name {
	case "cnn":
		if len(input) != 3 {
			return Spec{}, fmt.Errorf("%w: cnn needs image input [h, w, c], got %v", ErrSpec, input)
		}
		s.Layers = []LayerSpec{
			{Type: "conv2d", Filters: 32, Kernel: []int{3, 3}, Activation: "relu"},
			{Type: "maxpool2d", Pool: []int{2, 2}},
			{Type: "flatten"},
			{Type: "dense", Units: 64, Activation: "relu"},
			head,
		}
	case "mlp":
		s.Layers = []LayerSpec{{Type: "flatten"}, {Type: "dense", Units: 128, Activation: "relu"}, {Type: "dense", Units: 64, Activation: "relu"}, head}
	case "rnn", "lstm", "gru":
		if len(input) == 3 && input[2] == 1 {
			s.Input = input[:2]
		}
		if len(s.Input) != 2 {
			return Spec{}, fmt.Errorf("%w: %s needs sequence input [steps, features], got %v", ErrSpec, name, input)
		}
		typ := map[string]string{"rnn": "simple_rnn", "lstm": "lstm", "gru": "gru"}[name]
		s.Layers = []LayerSpec{{Type: typ, Units: 128}, head}
	default:
		return Spec{}, fmt.Errorf("%w: unknown architecture %q, want cnn, mlp, rnn, lstm or gru", ErrSpec, name)
	}
	return s, s.Validate()
}

// checkUnused refuses fields that do not apply to the layer's type, so a typo in a spec does
// not silently build a different model.
func checkUnused(ls LayerSpec) error {
	conv, pool := ls.Type == "conv2d", ls.Type == "maxpool2d"
	recurrent := ls.Type == "simple_rnn" || ls.Type == "lstm" || ls.Type == "gru"
	switch {
	case !conv && (len(ls.Kernel) > 0 || ls.Padding != "" || ls.Filters != 0):
		return fmt.Errorf("filters, kernel and padding apply to conv2d only")
	case !conv && !pool && len(ls.Strides) > 0:
		return fmt.Errorf("strides apply to conv2d and maxpool2d only")
	case !pool && len(ls.Pool) > 0:
		return fmt.Errorf("pool applies to maxpool2d only")
	case ls.Type != "dense" && !recurrent && ls.Units != 0:
		return fmt.Errorf("units apply to dense and recurrent layers only")
	case ls.Type != "dropout" && ls.Rate != 0:
		return fmt.Errorf("rate applies to dropout only")
	case !recurrent && ls.ReturnSequences:
		return fmt.Errorf("return_sequences applies to recurrent layers only")
	case (pool || ls.Type == "flatten" || ls.Type == "dropout") && ls.Activation != "":
		return fmt.Errorf("%s takes no activation", ls.Type)
	}
	return nil
}
