package model

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// seedCNN is the seed example's architecture, written out by hand.
const seedCNN = `{"input":[28,28,1],"layers":[
	{"type":"conv2d","filters":32,"kernel":[3,3],"activation":"relu"},
	{"type":"maxpool2d","pool":[2,2]},
	{"type":"flatten"},
	{"type":"dense","units":64,"activation":"relu"},
	{"type":"dense","units":10,"activation":"softmax"}]}`

func TestParseSpecValid(t *testing.T) {
	tests := []struct {
		name      string
		json      string
		out       []int
		numParams int
	}{
		// conv 3*3*1*32+32 = 320; the 26x26x32 output pools to 13x13x32 = 5408 inputs of the
		// first dense layer, 5408*64+64 = 346,176; the head 64*10+10 = 650.
		{"seed cnn", seedCNN, []int{10}, 320 + 346176 + 650},
		{"same padding and strides", `{"input":[9,9,3],"layers":[{"type":"conv2d","filters":4,"kernel":[3,3],"strides":[2,2],"padding":"same"},{"type":"flatten"}]}`,
			[]int{5 * 5 * 4}, 3*3*3*4 + 4},
		{"maxpool strides", `{"input":[7,7,2],"layers":[{"type":"maxpool2d","pool":[3,3],"strides":[2,2]},{"type":"flatten"}]}`, []int{3 * 3 * 2}, 0},
		{"dropout and activations", `{"input":[5],"layers":[{"type":"dropout","rate":0.5},{"type":"dense","units":3},{"type":"tanh"},{"type":"dense","units":2,"activation":"sigmoid"}]}`,
			[]int{2}, 5*3 + 3 + 3*2 + 2},
		{"linear activation", `{"input":[4],"layers":[{"type":"dense","units":1,"activation":"linear"}]}`, []int{1}, 5},
		{"whitespace around", " \n" + `{"input":[4],"layers":[{"type":"relu"}]}` + "\n ", []int{4}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tt.json))
			if err != nil {
				t.Fatalf("ParseSpec: %v", err)
			}
			out, err := s.OutputShape()
			if err != nil || fmt.Sprint(out) != fmt.Sprint(tt.out) {
				t.Errorf("OutputShape = %v, %v; want %v", out, err, tt.out)
			}
			m, err := Build(s, 1)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if got := m.NumParams(); got != tt.numParams {
				t.Errorf("NumParams = %d, want %d", got, tt.numParams)
			}
			again, err := ParseSpec([]byte(s.String()))
			if err != nil || !again.Equal(s) {
				t.Errorf("ParseSpec(String()) = %v, %v; want %v", again, err, s)
			}
		})
	}
}

func TestParseSpecInvalid(t *testing.T) {
	layers := func(n int) string {
		return `{"input":[4],"layers":[` + strings.Repeat(`{"type":"relu"},`, n-1) + `{"type":"relu"}]}`
	}
	tests := []struct {
		name string
		json string
		want string // substring of the error
	}{
		{"empty", ``, "EOF"},
		{"not an object", `[1,2]`, "cannot unmarshal array"},
		{"unknown type", `{"input":[4],"layers":[{"type":"conv"}]}`, `unknown layer type "conv"`},
		{"dense on 3-D input", `{"input":[28,28,1],"layers":[{"type":"dense","units":10}]}`, "input shape [28 28 1], want one dimension"},
		{"conv on 1-D input", `{"input":[28],"layers":[{"type":"conv2d","filters":1,"kernel":[3,3]}]}`, "want [height, width, channels]"},
		{"kernel larger than input", `{"input":[4,4,1],"layers":[{"type":"conv2d","filters":1,"kernel":[5,5]}]}`, "kernel [5 5] larger than input [4 4 1]"},
		{"pool larger than input", `{"input":[2,2,1],"layers":[{"type":"maxpool2d","pool":[3,3]}]}`, "pool [3 3] larger than input"},
		{"negative units", `{"input":[4],"layers":[{"type":"dense","units":-3}]}`, "units = -3"},
		{"zero units", `{"input":[4],"layers":[{"type":"dense"}]}`, "units = 0"},
		{"zero filters", `{"input":[4,4,1],"layers":[{"type":"conv2d","kernel":[3,3]}]}`, "filters = 0"},
		{"kernel of one value", `{"input":[4,4,1],"layers":[{"type":"conv2d","filters":1,"kernel":[3]}]}`, "kernel = [3], want two values"},
		{"bad padding", `{"input":[4,4,1],"layers":[{"type":"conv2d","filters":1,"kernel":[3,3],"padding":"full"}]}`, `padding "full", want valid or same`},
		{"unknown field", `{"input":[4],"layers":[{"type":"dense","unit":3}]}`, `unknown field "unit"`},
		{"unknown top-level field", `{"input":[4],"layers":[{"type":"relu"}],"seed":1}`, `unknown field "seed"`},
		{"field of another layer type", `{"input":[4],"layers":[{"type":"dense","units":3,"filters":2}]}`, "apply to conv2d only"},
		{"unknown activation", `{"input":[4],"layers":[{"type":"dense","units":3,"activation":"gelu"}]}`, `activation "gelu"`},
		{"dropout rate 1", `{"input":[4],"layers":[{"type":"dropout","rate":1}]}`, "rate = 1, want [0, 1)"},
		{"no layers", `{"input":[4],"layers":[]}`, "0 layers"},
		{"too many layers", layers(MaxLayers + 1), fmt.Sprintf("%d layers, want 1 to %d", MaxLayers+1, MaxLayers)},
		{"input rank 4", `{"input":[2,2,2,2],"layers":[{"type":"relu"}]}`, "rank 4"},
		{"zero input dimension", `{"input":[0],"layers":[{"type":"relu"}]}`, "dimensions must be in [1, 65536]"},
		{"huge number", `{"input":[1e400],"layers":[{"type":"relu"}]}`, "cannot unmarshal number"},
		{"integer overflow", `{"input":[99999999999999999999],"layers":[{"type":"relu"}]}`, "cannot unmarshal number"},
		{"trailing data", `{"input":[4],"layers":[{"type":"relu"}]} {}`, "trailing data"},
		{"too many parameters", `{"input":[65536],"layers":[{"type":"dense","units":65536}]}`, fmt.Sprint(MaxParams)},
		{"too large activation", `{"input":[4096,4096,1],"layers":[{"type":"conv2d","filters":2,"kernel":[1,1]}]}`, "values per sample"},
		{"too many bytes", `{"input":[4],"layers":[{"type":"relu"}]}` + strings.Repeat(" ", MaxSpecBytes), "bytes, want at most"},
		{"deep nesting", strings.Repeat("[", 20000) + strings.Repeat("]", 20000), "exceeded max depth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tt.json))
			if err == nil {
				t.Fatalf("ParseSpec succeeded, want an error containing %q", tt.want)
			}
			if !errors.Is(err, ErrSpec) {
				t.Errorf("error %v does not wrap ErrSpec", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// A spec too large to build must be refused by checking, before anything the size of the
// model is allocated.
func TestParseSpecTooManyParamsFailsFast(t *testing.T) {
	data := []byte(`{"input":[65536],"layers":[{"type":"dense","units":65536}]}`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ParseSpec(data)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("ParseSpec accepted a 4 Gi-parameter model")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("ParseSpec allocated %d bytes to refuse the spec, want under 1 MiB", got)
	}
}

// Shapes whose products overflow int must be refused, not wrapped around to a small count.
// kernel [65536, 65536] on 65536 channels with 32768 filters is 2^63 weights, which wraps to
// a negative number of parameters; with "same" padding and strides of 65536 the output is a
// single 1x1x32768 pixel, so neither the activation limit nor the (wrapped) parameter limit
// catches it, and Build panics in make.
func TestParseSpecRefusesOverflowingShapes(t *testing.T) {
	specs := []string{
		`{"input":[65536,65536,65536],"layers":[{"type":"conv2d","filters":32768,"kernel":[65536,65536],"strides":[65536,65536],"padding":"same"}]}`,
		`{"input":[65536,65536,65536],"layers":[{"type":"conv2d","filters":65536,"kernel":[65536,65536],"strides":[65536,65536],"padding":"same"}]}`,
	}
	for _, js := range specs {
		s, err := ParseSpec([]byte(js))
		if err == nil {
			t.Errorf("ParseSpec accepted %s (Build would panic: the kernel has 2^63 or more weights)", s)
		}
	}
}

func TestArchitectureCNNIsTheSeedExample(t *testing.T) {
	s, err := Architecture("cnn", []int{28, 28, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseSpec([]byte(seedCNN))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Equal(want) {
		t.Errorf("Architecture(cnn) = %s, want %s", s, want)
	}
	m, err := Build(s, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Keras's model.summary() for the same model:
	//   conv2d  (None, 26, 26, 32)     320   = 3*3*1*32 + 32
	//   maxpool (None, 13, 13, 32)       0
	//   flatten (None, 5408)             0   = 13*13*32
	//   dense   (None, 64)         346,176   = 5408*64 + 64
	//   dense   (None, 10)             650   = 64*10 + 10
	//   Total params: 347,146
	if got := m.NumParams(); got != 347146 {
		t.Errorf("NumParams = %d, want 347146", got)
	}
	var names []string
	for _, p := range m.Params() {
		names = append(names, fmt.Sprintf("%s%v", p.Name, p.Shape))
	}
	// Layer indices count the fused activations: conv, relu, pool, flatten, dense, relu, dense, softmax.
	wantNames := "[layers.0.kernel[3 3 1 32] layers.0.bias[32] layers.4.kernel[5408 64] layers.4.bias[64] layers.6.kernel[64 10] layers.6.bias[10]]"
	if got := fmt.Sprint(names); got != wantNames {
		t.Errorf("Params = %s, want %s", got, wantNames)
	}
}

func TestArchitectureMLP(t *testing.T) {
	s, err := Architecture("mlp", []int{28, 28, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Build(s, 1)
	if err != nil {
		t.Fatal(err)
	}
	// 784*128+128 + 128*64+64 + 64*10+10
	if got, want := m.NumParams(), 100480+8256+650; got != want {
		t.Errorf("NumParams = %d, want %d", got, want)
	}
}

func TestArchitectureInvalid(t *testing.T) {
	tests := []struct {
		name    string
		arch    string
		input   []int
		classes int
		want    string
	}{
		{"unknown", "resnet", []int{28, 28, 1}, 10, `unknown architecture "resnet"`},
		{"cnn on vectors", "cnn", []int{784}, 10, "cnn needs image input"},
		{"one class", "mlp", []int{4}, 1, "1 classes, want at least 2"},
		{"bad input", "mlp", []int{0}, 10, "dimensions must be in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Architecture(tt.arch, tt.input, tt.classes)
			if err == nil || !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Architecture(%q, %v, %d) error = %v, want ErrSpec containing %q", tt.arch, tt.input, tt.classes, err, tt.want)
			}
		})
	}
}

// FuzzParseSpec checks that ParseSpec never panics, that what it accepts survives a round
// trip through String, and that an accepted spec's parameter count, computed with overflow
// checks, is within MaxParams, so Build cannot be made to panic or allocate without bound.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(seedCNN))
	f.Add([]byte(``))
	f.Add([]byte(strings.Repeat(`{"layers":[`, 100)))
	f.Add([]byte(`{"input":[1e308,-1,99999999999999999999],"layers":[{"type":"dense","units":9223372036854775807}]}`))
	f.Add([]byte(`{"input":[8,8,3],"layers":[{"type":"conv2d","filters":2,"kernel":[3,3],"strides":[2,1],"padding":"same","activation":"tanh"},{"type":"maxpool2d","pool":[2,2]},{"type":"flatten"},{"type":"dropout","rate":0.25},{"type":"dense","units":3,"activation":"softmax"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("error %v does not wrap ErrSpec", err)
			}
			return
		}
		again, err := ParseSpec([]byte(s.String()))
		if err != nil || !again.Equal(s) {
			t.Fatalf("ParseSpec(%s) = %v, %v; want the same spec back", s, again, err)
		}
		_, total, err := paramShapes(s)
		if err != nil {
			t.Fatalf("ParseSpec accepted %s, but %v", s, err)
		}
		if total <= 4<<16 {
			m, err := Build(s, 1)
			if err != nil {
				t.Fatalf("Build(%s): %v", s, err)
			}
			if got := 4 * uint64(m.NumParams()); got != total {
				t.Fatalf("Build(%s) has %d parameter bytes, want %d", s, got, total)
			}
		}
	})
}
