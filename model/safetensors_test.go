package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/tiny.safetensors and the FuzzLoad seed corpus")

// tinySpec is a small CNN with every parameterised layer type of the seed example, for tests
// that take files apart byte by byte.
const tinySpec = `{"input":[4,4,1],"layers":[{"type":"conv2d","filters":2,"kernel":[3,3],"activation":"relu"},{"type":"flatten"},{"type":"dense","units":3,"activation":"softmax"}]}`

// tinyModel has weights i/8 - 2, exactly representable, so the golden file is readable.
func tinyModel(t testing.TB) *Sequential {
	t.Helper()
	s, err := ParseSpec([]byte(tinySpec))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Build(s, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := make([]float32, m.NumParams())
	for i := range w {
		w[i] = float32(i)/8 - 2
	}
	if err := m.SetFlat(w); err != nil {
		t.Fatal(err)
	}
	return m
}

func save(t testing.TB, m *Sequential, meta map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Save(&buf, m, meta); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return buf.Bytes()
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestSafetensorsRoundTrip(t *testing.T) {
	for _, arch := range []string{"cnn", "mlp", "rnn", "lstm", "gru"} {
		t.Run(arch, func(t *testing.T) {
			s, err := Architecture(arch, []int{28, 28, 1}, 10)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Build(s, 42)
			if err != nil {
				t.Fatal(err)
			}
			file := save(t, m, map[string]string{"round": "3", "hospital": "Hôpital Saint-Louis"})
			got, meta, err := Load(bytes.NewReader(file))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !sameBits(got.Flat(nil), m.Flat(nil)) {
				t.Error("loaded weights differ from the saved ones")
			}
			if !got.Spec().Equal(m.Spec()) {
				t.Errorf("loaded spec %s, want %s", got.Spec(), m.Spec())
			}
			want := map[string]string{"round": "3", "hospital": "Hôpital Saint-Louis", "format": "medfed", "medfed_version": Version, "spec": s.String()}
			if fmt.Sprint(meta) != fmt.Sprint(want) {
				t.Errorf("metadata = %v, want %v", meta, want)
			}
			if len(file) != 8+headerLen(file)+4*m.NumParams() {
				t.Errorf("file is %d bytes, want 8 + header %d + 4 * %d parameters", len(file), headerLen(file), m.NumParams())
			}
			// Same predictions, as a check that nothing but the weights matters.
			x := make([]float32, 2*28*28)
			for i := range x {
				x[i] = float32(i%17) / 17
			}
			if !sameBits(got.Predict(x, 2), m.Predict(x, 2)) {
				t.Error("loaded model predicts differently")
			}
		})
	}
}

func headerLen(file []byte) int { return int(binary.LittleEndian.Uint64(file)) }

func TestSaveLayout(t *testing.T) {
	m := tinyModel(t)
	file := save(t, m, nil)
	n := headerLen(file)
	if (8+n)%8 != 0 {
		t.Errorf("data starts at byte %d, want a multiple of 8", 8+n)
	}
	header := file[8 : 8+n]
	if !bytes.HasPrefix(header, []byte(`{"__metadata__":{`)) {
		t.Errorf("header starts %.40q, want __metadata__ first", header)
	}
	// Tensors appear in Params order with increasing offsets, and the buffer is Flat.
	var off uint64
	pos := 0
	for _, p := range m.Params() {
		entry := fmt.Sprintf(`%q:{"dtype":"F32","shape":%s,"data_offsets":[%d,%d]}`, p.Name, strings.ReplaceAll(fmt.Sprint(p.Shape), " ", ","), off, off+4*uint64(len(p.Data)))
		i := bytes.Index(header, []byte(entry))
		if i < pos {
			t.Errorf("header %s lacks %s after byte %d", header, entry, pos)
		}
		pos = i
		off += 4 * uint64(len(p.Data))
	}
	data := file[8+n:]
	for i, v := range m.Flat(nil) {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:])); got != v {
			t.Fatalf("data[%d] = %v, want Flat()[%d] = %v", i, got, i, v)
		}
	}
}

// TestSaveGolden pins the byte format: Save of tinyModel must equal testdata/tiny.safetensors
// (regenerate with -update after a deliberate format or Version change).
func TestSaveGolden(t *testing.T) {
	m := tinyModel(t)
	file := save(t, m, map[string]string{"round": "1"})
	golden := filepath.Join("testdata", "tiny.safetensors")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, file, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, want) {
		t.Errorf("Save output differs from %s:\n got %q\nwant %q", golden, file, want)
	}
	got, _, err := LoadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !sameBits(got.Flat(nil), m.Flat(nil)) {
		t.Errorf("%s loads to different weights", golden)
	}
}

func TestSaveReservedMetadataIsReplaced(t *testing.T) {
	m := tinyModel(t)
	file := save(t, m, map[string]string{"spec": "lies", "format": "other", "medfed_version": "9"})
	_, meta, err := Load(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if meta["spec"] != m.Spec().String() || meta["format"] != "medfed" || meta["medfed_version"] != Version {
		t.Errorf("metadata = %v, want Save's own spec, format and version", meta)
	}
}

func TestSaveRefuses(t *testing.T) {
	t.Run("NaN weight", func(t *testing.T) {
		m := tinyModel(t)
		m.Params()[2].Data[5] = float32(math.NaN())
		err := Save(&bytes.Buffer{}, m, nil)
		if err == nil || !strings.Contains(err.Error(), "layers.3.kernel[5] is NaN") {
			t.Errorf("Save error = %v, want one naming layers.3.kernel[5]", err)
		}
	})
	t.Run("invalid UTF-8 metadata", func(t *testing.T) {
		if err := Save(&bytes.Buffer{}, tinyModel(t), map[string]string{"k": "\xff"}); err == nil {
			t.Error("Save accepted metadata that is not UTF-8")
		}
	})
	t.Run("huge metadata", func(t *testing.T) {
		meta := map[string]string{"big": strings.Repeat("x", MaxHeaderBytes)}
		if err := Save(&bytes.Buffer{}, tinyModel(t), meta); err == nil || !strings.Contains(err.Error(), "header is") {
			t.Errorf("Save error = %v, want a header size error", err)
		}
	})
}

// rawFile assembles a file from a header string (padded as Save does) and a data buffer.
func rawFile(header string, data []byte) []byte {
	for (len(header))%8 != 0 {
		header += " "
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	return append(append(n[:], header...), data...)
}

// split returns the header text and the data of a file.
func split(file []byte) (string, []byte) {
	n := headerLen(file)
	return strings.TrimRight(string(file[8:8+n]), " "), file[8+n:]
}

// editHeader decodes the header of file into a map, lets edit change it and re-encodes it.
func editHeader(t *testing.T, file []byte, edit func(h map[string]any)) []byte {
	t.Helper()
	header, data := split(file)
	var h map[string]any
	if err := json.Unmarshal([]byte(header), &h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return rawFile(string(b), data)
}

func tensor(h map[string]any, name string) map[string]any { return h[name].(map[string]any) }
func metadata(h map[string]any) map[string]any            { return h["__metadata__"].(map[string]any) }

func TestLoadRefusesCorruptFiles(t *testing.T) {
	m := tinyModel(t)
	valid := save(t, m, nil)
	header, data := split(valid)
	// tinyModel's tensors: layers.0.kernel [3 3 1 2] at [0, 72), layers.0.bias [2] at
	// [72, 80), layers.3.kernel [8 3] at [80, 176), layers.3.bias [3] at [176, 188).
	withData := func(edit func(d []byte)) []byte {
		d := bytes.Clone(data)
		edit(d)
		return rawFile(header, d)
	}
	setFloat := func(i int, v float32) func(d []byte) {
		return func(d []byte) { binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(v)) }
	}
	lenPrefix := func(n uint64) []byte {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], n)
		return b[:]
	}
	biasEntry := `"layers.0.bias":{"dtype":"F32","shape":[2],"data_offsets":[72,80]}`
	if !strings.Contains(header, biasEntry) {
		t.Fatalf("header %s lacks %s", header, biasEntry)
	}

	tests := []struct {
		name string
		file []byte
		want string // substring of the error
	}{
		{"empty", nil, "header length"},
		{"9 bytes", []byte("\x10\x00\x00\x00\x00\x00\x00\x00{"), "truncated header"},
		{"header length huge", append(lenPrefix(1<<62), '{', '}'), "header length 4611686018427387904, want 2 to 16777216"},
		{"header length over the cap", append(lenPrefix(MaxHeaderBytes+1), '{'), "header length 16777217"},
		{"header length zero", lenPrefix(0), "header length 0"},
		{"header not JSON", rawFile("not json", data), "header: invalid character"},
		{"header an array", rawFile("[]", data), "want a JSON object"},
		{"header with trailing text", rawFile(header+"x", data), "after the JSON object"},
		{"header not UTF-8", rawFile(strings.Replace(header, `"format"`, "\"f\xffrmat\"", 1), data), "not valid UTF-8"},
		{"dtype F16", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.0.bias")["dtype"] = "F16" }), `tensor "layers.0.bias" has dtype "F16", want "F32"`},
		{"dtype F64", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.kernel")["dtype"] = "F64" }), `tensor "layers.3.kernel" has dtype "F64"`},
		{"dtype missing", editHeader(t, valid, func(h map[string]any) { delete(tensor(h, "layers.3.bias"), "dtype") }), `has dtype ""`},
		{"wrong shape", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.kernel")["shape"] = []int{3, 8} }), `tensor "layers.3.kernel" has shape [3 8], want [8 3]`},
		{"negative shape", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.bias")["shape"] = []int{-3} }), "has shape [-3], want [3]"},
		{"missing tensor", editHeader(t, valid, func(h map[string]any) { delete(h, "layers.0.bias") }), `missing tensor "layers.0.bias"`},
		{"extra tensor", editHeader(t, valid, func(h map[string]any) {
			h["layers.9.kernel"] = map[string]any{"dtype": "F32", "shape": []int{1}, "data_offsets": []int{188, 192}}
		}), `unexpected tensor "layers.9.kernel"`},
		{"duplicate tensor", rawFile(strings.TrimSuffix(header, "}")+","+biasEntry+"}", data), `duplicate key "layers.0.bias"`},
		{"duplicate metadata key", rawFile(strings.Replace(header, `{"__metadata__":{`, `{"__metadata__":{"spec":"{}",`, 1), data), `duplicate key "spec"`},
		{"overlapping offsets", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.0.bias")["data_offsets"] = []int{64, 72} }), "overlaps the previous tensor"},
		{"gap between tensors", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.bias")["data_offsets"] = []int{180, 192} }), `gap in the data buffer: tensor "layers.3.bias" begins at byte 180, want 176`},
		{"offsets beyond buffer", editHeader(t, valid, func(h map[string]any) {
			tensor(h, "layers.3.bias")["data_offsets"] = []uint64{1 << 62, 1<<62 + 12}
		}), "begins at byte 4611686018427387904"},
		{"offsets of the wrong size", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.bias")["data_offsets"] = []int{176, 1 << 40} }), "want a range of 12 bytes"},
		{"offsets reversed", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.bias")["data_offsets"] = []int{188, 176} }), "want a range of 12 bytes"},
		{"offsets negative", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.bias")["data_offsets"] = []int{-12, 0} }), "cannot unmarshal number -12"},
		{"three offsets", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.bias")["data_offsets"] = []int{176, 188, 200} }), "want [begin, end]"},
		{"unknown tensor field", editHeader(t, valid, func(h map[string]any) { tensor(h, "layers.3.bias")["endian"] = "big" }), `unknown field "endian"`},
		{"truncated data", valid[:len(valid)-1], "truncated data: got 187 bytes, want 188"},
		{"no data", valid[:8+headerLen(valid)], "truncated data: got 0 bytes, want 188"},
		{"trailing garbage", append(bytes.Clone(valid), 0), "trailing bytes after the 188-byte data buffer"},
		{"NaN weight", withData(setFloat(20, float32(math.NaN()))), `tensor "layers.3.kernel" element 0 is NaN`},
		{"+Inf weight", withData(setFloat(46, float32(math.Inf(1)))), `tensor "layers.3.bias" element 2 is +Inf`},
		{"no metadata", editHeader(t, valid, func(h map[string]any) { delete(h, "__metadata__") }), "no __metadata__"},
		{"spec metadata missing", editHeader(t, valid, func(h map[string]any) { delete(metadata(h), "spec") }), `no "spec" in __metadata__`},
		{"spec metadata invalid", editHeader(t, valid, func(h map[string]any) { metadata(h)["spec"] = `{"input":[4],"layers":[]}` }), "spec metadata: invalid model spec: 0 layers"},
		{"spec metadata not JSON", editHeader(t, valid, func(h map[string]any) { metadata(h)["spec"] = `cnn` }), "spec metadata: invalid model spec"},
		{"spec metadata of another model", editHeader(t, valid, func(h map[string]any) {
			metadata(h)["spec"] = strings.Replace(tinySpec, `"units":3`, `"units":4`, 1)
		}), `tensor "layers.3.bias" has shape [3], want [4]`},
		{"metadata value not a string", editHeader(t, valid, func(h map[string]any) { metadata(h)["round"] = 3 }), `__metadata__ "round": want a string value`},
		{"other format", editHeader(t, valid, func(h map[string]any) { metadata(h)["format"] = "pt" }), `metadata format "pt", want "medfed"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, meta, err := Load(bytes.NewReader(tt.file))
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tt.want)
			}
			if got != nil || meta != nil {
				t.Errorf("Load returned a model or metadata with error %v", err)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadRefusesEveryTruncation(t *testing.T) {
	valid := save(t, tinyModel(t), nil)
	for n := range len(valid) {
		_, _, err := Load(bytes.NewReader(valid[:n]))
		if !errors.Is(err, ErrFormat) {
			t.Errorf("Load of the first %d of %d bytes: error %v, want ErrFormat", n, len(valid), err)
		}
	}
}

func TestLoadSpecWithOverflowingShapes(t *testing.T) {
	// Build would panic on this spec (see TestParseSpecRefusesOverflowingShapes); Load must
	// refuse it with an error however ParseSpec treats it.
	spec := `{"input":[65536,65536,65536],"layers":[{"type":"conv2d","filters":32768,"kernel":[65536,65536],"strides":[65536,65536],"padding":"same"}]}`
	b, _ := json.Marshal(map[string]any{"__metadata__": map[string]string{"spec": spec}})
	_, _, err := Load(bytes.NewReader(rawFile(string(b), nil)))
	if !errors.Is(err, ErrFormat) {
		t.Errorf("Load error = %v, want ErrFormat", err)
	}
}

func TestLoadWeights(t *testing.T) {
	src := tinyModel(t)
	file := save(t, src, nil)

	dst, err := Build(src.Spec(), 99)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.LoadWeights(bytes.NewReader(file)); err != nil {
		t.Fatalf("LoadWeights: %v", err)
	}
	if !sameBits(dst.Flat(nil), src.Flat(nil)) {
		t.Error("LoadWeights did not copy the file's weights")
	}

	t.Run("other spec", func(t *testing.T) {
		other, err := Architecture("mlp", []int{4, 4, 1}, 3)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Build(other, 1)
		if err != nil {
			t.Fatal(err)
		}
		before := m.Flat(nil)
		err = m.LoadWeights(bytes.NewReader(file))
		if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), "file has spec") {
			t.Errorf("LoadWeights error = %v, want ErrSpec naming both specs", err)
		}
		if !sameBits(m.Flat(nil), before) {
			t.Error("failed LoadWeights changed the model")
		}
	})
	t.Run("corrupt file", func(t *testing.T) {
		m, err := Build(src.Spec(), 1)
		if err != nil {
			t.Fatal(err)
		}
		before := m.Flat(nil)
		bad := bytes.Clone(file)
		binary.LittleEndian.PutUint32(bad[len(bad)-4:], math.Float32bits(float32(math.NaN())))
		if err := m.LoadWeights(bytes.NewReader(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("LoadWeights error = %v, want ErrFormat", err)
		}
		if !sameBits(m.Flat(nil), before) {
			t.Error("failed LoadWeights changed the model")
		}
	})
}

func TestSaveFileLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	m := tinyModel(t)
	if err := SaveFile(path, m, map[string]string{"round": "2"}); err != nil {
		t.Fatal(err)
	}
	// Overwrite in place: the rename replaces the old file.
	if err := SaveFile(path, m, map[string]string{"round": "3"}); err != nil {
		t.Fatal(err)
	}
	got, meta, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !sameBits(got.Flat(nil), m.Flat(nil)) || meta["round"] != "3" {
		t.Errorf("LoadFile gave different weights or metadata %v", meta)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files after SaveFile, want 1 (no temporary files left)", len(entries))
	}

	t.Run("errors name the file", func(t *testing.T) {
		missing := filepath.Join(dir, "missing.safetensors")
		if _, _, err := LoadFile(missing); err == nil || !strings.Contains(err.Error(), "load "+missing+": ") {
			t.Errorf("LoadFile(missing) error = %v, want it to name %s", err, missing)
		}
		corrupt := filepath.Join(dir, "corrupt.safetensors")
		if err := os.WriteFile(corrupt, []byte("not a model"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadFile(corrupt)
		if err == nil || !strings.Contains(err.Error(), "load "+corrupt+": ") || !errors.Is(err, ErrFormat) {
			t.Errorf("LoadFile(corrupt) error = %v, want ErrFormat naming %s", err, corrupt)
		}
		noDir := filepath.Join(dir, "no", "such", "dir", "m.safetensors")
		if err := SaveFile(noDir, m, nil); err == nil || !strings.Contains(err.Error(), noDir) {
			t.Errorf("SaveFile into a missing directory: error = %v, want it to name %s", err, noDir)
		}
	})
	t.Run("failed save leaves no temporary file", func(t *testing.T) {
		bad := tinyModel(t)
		bad.Params()[0].Data[0] = float32(math.Inf(-1))
		if err := SaveFile(filepath.Join(dir, "bad.safetensors"), bad, nil); err == nil {
			t.Fatal("SaveFile wrote a model with an infinite weight")
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 2 { // model and corrupt
			t.Errorf("directory holds %d files after a failed SaveFile, want 2", len(entries))
		}
	})
}

// FuzzLoad checks that Load never panics, refuses only with ErrFormat, and that anything it
// accepts saves and loads again to the same weights, spec and metadata.
func FuzzLoad(f *testing.F) {
	// The seed corpus is in testdata/fuzz/FuzzLoad; -update rewrites its generated entries.
	if *update {
		valid := save(f, tinyModel(f), map[string]string{"round": "1"})
		seeds := map[string][]byte{
			"valid_tiny_model":    valid,
			"nine_bytes":          []byte("\x10\x00\x00\x00\x00\x00\x00\x00{"),
			"huge_header_length":  append([]byte("\xff\xff\xff\xff\xff\xff\xff\x7f"), `{"__metadata__":{}}`...),
			"header_cap_plus_one": append(binary.LittleEndian.AppendUint64(nil, MaxHeaderBytes+1), '{'),
		}
		dir := filepath.Join("testdata", "fuzz", "FuzzLoad")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			f.Fatal(err)
		}
		for name, b := range seeds {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				f.Fatal(err)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, meta, err := Load(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := Save(&buf, m, meta); err != nil {
			t.Fatalf("Save of a loaded model: %v", err)
		}
		again, meta2, err := Load(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("Load of a re-saved model: %v", err)
		}
		if !sameBits(again.Flat(nil), m.Flat(nil)) || !again.Spec().Equal(m.Spec()) {
			t.Fatal("re-saved model loads to different weights or spec")
		}
		for k, v := range meta {
			if k != MetaVersion && meta2[k] != v && k != MetaSpec && k != MetaFormat {
				t.Fatalf("metadata %q = %q after a round trip, want %q", k, meta2[k], v)
			}
		}
	})
}

func ExampleSave() {
	spec, _ := Architecture("cnn", []int{28, 28, 1}, 10)
	m, _ := Build(spec, 1)
	var buf bytes.Buffer
	if err := Save(&buf, m, map[string]string{"round": "3"}); err != nil {
		fmt.Println(err)
		return
	}
	loaded, meta, err := Load(&buf)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(loaded.NumParams(), meta["format"], meta["round"], loaded.Params()[2].Name)
	// Output: 347146 medfed 3 layers.4.kernel
}
