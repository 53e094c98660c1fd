package model

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/medfed/medfed/internal/atomicfile"
)

// Version is the MedFed version written into the metadata of every file Save writes.
const Version = "0.1.0"

// ErrFormat reports a safetensors file that Load refuses: malformed, truncated, or not
// matching the architecture its spec describes.
var ErrFormat = errors.New("invalid safetensors file")

// Metadata keys Save always writes. Values the caller passes for them are replaced.
const (
	MetaFormat  = "format"         // "medfed"
	MetaVersion = "medfed_version" // Version of the writer
	MetaSpec    = "spec"           // the model's Spec as JSON; Load builds the model from it
)

// MaxHeaderBytes bounds the JSON header of a safetensors file Load accepts.
const MaxHeaderBytes = 16 << 20

const (
	formatName = "medfed"
	dtypeF32   = "F32"
)

// Save writes m in the safetensors format (https://github.com/huggingface/safetensors): an
// 8-byte little-endian header length, a JSON header padded with spaces to a multiple of 8
// bytes, then the tensors' bytes. There is one little-endian F32 tensor per parameter, named
// as Sequential.Params names them ("layers.{i}.kernel", ...), laid out in Params order with no
// gaps, so the buffer is the flat parameter vector. The header's __metadata__ holds
// "format": "medfed", "medfed_version": Version, "spec": the JSON Spec, and the entries of
// meta (whose values for those three keys are replaced).
//
// Save refuses non-finite weights and metadata that is not valid UTF-8, which Load would
// refuse to read back. It must not run concurrently with training or SetFlat on m.
func Save(w io.Writer, m *Sequential, meta map[string]string) error {
	for _, p := range m.params {
		if i, v, ok := firstNonFinite(p.Data); ok {
			return fmt.Errorf("save: parameter %s[%d] is %v, want a finite value", p.Name, i, v)
		}
	}
	full := make(map[string]string, len(meta)+3)
	for k, v := range meta {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("save: metadata %q is not valid UTF-8", k)
		}
		full[k] = v
	}
	full[MetaFormat] = formatName
	full[MetaVersion] = Version
	full[MetaSpec] = m.spec.String()

	header, err := encodeHeader(m.params, full)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	bw.Write(n[:])
	bw.Write(header)
	var b [4]byte
	for _, p := range m.params {
		for _, v := range p.Data {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			bw.Write(b[:])
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

// encodeHeader returns the JSON header: __metadata__ (keys sorted) first, then the tensors in
// params order, padded with spaces to a multiple of 8 bytes.
func encodeHeader(params []*Param, meta map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"__metadata__":{`)
	for i, k := range slices.Sorted(maps.Keys(meta)) {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(&buf, k)
		buf.WriteByte(':')
		writeJSONString(&buf, meta[k])
	}
	buf.WriteByte('}')
	var off uint64
	for _, p := range params {
		buf.WriteByte(',')
		writeJSONString(&buf, p.Name)
		buf.WriteString(`:{"dtype":"F32","shape":[`)
		for i, d := range p.Shape {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(strconv.Itoa(d))
		}
		end := off + 4*uint64(len(p.Data))
		fmt.Fprintf(&buf, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	if buf.Len() > MaxHeaderBytes {
		return nil, fmt.Errorf("save: header is %d bytes, want at most %d (metadata too large)", buf.Len(), MaxHeaderBytes)
	}
	return buf.Bytes(), nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}

// SaveFile writes m to path with Save, atomically: it writes a temporary file in the same
// directory, syncs it and renames it over path, so readers see the old file or the new one,
// never a partial one. The file is created with mode 0600.
func SaveFile(path string, m *Sequential, meta map[string]string) error {
	if err := atomicfile.Write(path, 0o600, func(w io.Writer) error { return Save(w, m, meta) }); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

// Load reads a model written by Save. It builds the architecture from the "spec" metadata
// (weights are then overwritten, so no seed is needed) and returns the model with the file's
// whole metadata, including "format", "medfed_version" and "spec".
//
// Every tensor must be F32, match the shape of the parameter of the same name, and the
// tensors must tile the data buffer exactly (in any order); missing, extra, duplicate,
// overlapping or out-of-range tensors, a truncated file, trailing bytes after the buffer and
// non-finite weights are refused with an error wrapping ErrFormat. Sizes are checked before
// anything is allocated: the header is at most MaxHeaderBytes and the data at most MaxParams
// float32s, and memory grows only as the reader delivers bytes. Peak memory is about twice
// the model's size.
func Load(r io.Reader) (*Sequential, map[string]string, error) {
	f, err := readSafetensors(r)
	if err != nil {
		return nil, nil, err
	}
	m, err := Build(f.spec, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: building spec: %w", ErrFormat, err)
	}
	for _, p := range m.params {
		f.decode(p.Name, p.Data)
	}
	return m, f.meta, nil
}

// LoadFile opens path and reads it with Load. Errors name the file.
func LoadFile(path string) (*Sequential, map[string]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer fh.Close()
	m, meta, err := Load(bufio.NewReaderSize(fh, 64<<10))
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	return m, meta, nil
}

// LoadWeights overwrites m's weights with those of a file written by Save for the same
// architecture, as a coordinator does when it checks a file against the federation's spec.
// It refuses a file whose spec differs from m's (the error wraps ErrSpec) and any file Load
// refuses (ErrFormat). On error m is unchanged. It must not run concurrently with anything
// else on m.
func (m *Sequential) LoadWeights(r io.Reader) error {
	f, err := readSafetensors(r)
	if err != nil {
		return err
	}
	if !f.spec.Equal(m.spec) {
		return fmt.Errorf("%w: file has spec %s, want %s", ErrSpec, f.spec, m.spec)
	}
	// f.data has been checked in full, so the copy below cannot fail half way.
	for _, p := range m.params {
		f.decode(p.Name, p.Data)
	}
	return nil
}

// safetensorsFile is a checked file: every tensor of spec's architecture has a range in data.
type safetensorsFile struct {
	spec   Spec
	meta   map[string]string
	ranges map[string][2]uint64
	data   []byte
}

// decode copies the tensor name into dst; the range was checked against len(dst) on reading.
func (f *safetensorsFile) decode(name string, dst []float32) {
	rg := f.ranges[name]
	b := f.data[rg[0]:rg[1]]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

type tensorInfo struct {
	Dtype       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// readSafetensors reads and checks a whole file: header, spec, tensor table, data.
func readSafetensors(r io.Reader) (*safetensorsFile, error) {
	var n [8]byte
	if k, err := io.ReadFull(r, n[:]); err != nil {
		return nil, formatErr("reading the 8-byte header length: got %d bytes: %v", k, err)
	}
	hlen := binary.LittleEndian.Uint64(n[:])
	if hlen < 2 || hlen > MaxHeaderBytes {
		return nil, formatErr("header length %d, want 2 to %d", hlen, MaxHeaderBytes)
	}
	header, err := io.ReadAll(io.LimitReader(r, int64(hlen)))
	if err != nil {
		return nil, formatErr("reading header: %v", err)
	}
	if uint64(len(header)) != hlen {
		return nil, formatErr("truncated header: got %d bytes, want %d", len(header), hlen)
	}
	tensors, order, meta, err := parseHeader(header)
	if err != nil {
		return nil, err
	}

	specJSON, ok := meta[MetaSpec]
	if !ok {
		return nil, formatErr("no %q in __metadata__: not a MedFed model file", MetaSpec)
	}
	if v, ok := meta[MetaFormat]; ok && v != formatName {
		return nil, formatErr("metadata format %q, want %q", v, formatName)
	}
	spec, err := ParseSpec([]byte(specJSON))
	if err != nil {
		return nil, fmt.Errorf("%w: spec metadata: %w", ErrFormat, err)
	}
	want, total, err := paramShapes(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: spec metadata: %w", ErrFormat, err)
	}

	// Match the tensor table against the architecture, in file order for stable errors.
	ranges := make(map[string][2]uint64, len(tensors))
	for _, name := range order {
		ti := tensors[name]
		shape, ok := want[name]
		if !ok {
			return nil, formatErr("unexpected tensor %q: the spec's model has no such parameter", name)
		}
		if ti.Dtype != dtypeF32 {
			return nil, formatErr("tensor %q has dtype %q, want %q", name, ti.Dtype, dtypeF32)
		}
		if !slices.Equal(ti.Shape, shape) {
			return nil, formatErr("tensor %q has shape %v, want %v", name, ti.Shape, shape)
		}
		if len(ti.DataOffsets) != 2 {
			return nil, formatErr("tensor %q has data_offsets %v, want [begin, end]", name, ti.DataOffsets)
		}
		b, e := ti.DataOffsets[0], ti.DataOffsets[1]
		size := 4 * uint64(numel(shape))
		if e < b || e-b != size {
			return nil, formatErr("tensor %q has data_offsets [%d, %d], want a range of %d bytes", name, b, e, size)
		}
		ranges[name] = [2]uint64{b, e}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := ranges[name]; !ok {
			return nil, formatErr("missing tensor %q", name)
		}
	}
	// The ranges must tile [0, total) exactly.
	byBegin := slices.SortedFunc(maps.Keys(ranges), func(a, b string) int {
		ra, rb := ranges[a], ranges[b]
		return cmp.Or(cmp.Compare(ra[0], rb[0]), cmp.Compare(ra[1], rb[1]))
	})
	var off uint64
	for _, name := range byBegin {
		rg := ranges[name]
		switch {
		case rg[0] < off:
			return nil, formatErr("tensor %q at bytes [%d, %d) overlaps the previous tensor, which ends at %d", name, rg[0], rg[1], off)
		case rg[0] > off:
			return nil, formatErr("gap in the data buffer: tensor %q begins at byte %d, want %d", name, rg[0], off)
		}
		off = rg[1]
	}
	if off != total {
		// Unreachable while the tensors match the spec's shapes, kept as a guard.
		return nil, formatErr("tensors cover %d bytes, want %d", off, total)
	}

	// Read exactly total bytes, growing memory only as data arrives, then require EOF.
	data, err := io.ReadAll(io.LimitReader(r, int64(total)+1))
	if err != nil {
		return nil, formatErr("reading data: %v", err)
	}
	switch {
	case uint64(len(data)) < total:
		return nil, formatErr("truncated data: got %d bytes, want %d", len(data), total)
	case uint64(len(data)) > total:
		return nil, formatErr("trailing bytes after the %d-byte data buffer", total)
	}
	for i := 0; i < len(data); i += 4 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(data[i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			name, idx := locate(ranges, uint64(i))
			return nil, formatErr("tensor %q element %d is %v, want a finite value", name, idx, v)
		}
	}
	return &safetensorsFile{spec: spec, meta: meta, ranges: ranges, data: data}, nil
}

// parseHeader decodes the JSON header strictly: one object, no duplicate keys at any level
// that matters, string-valued __metadata__, tensor entries with only the known fields, and
// nothing but whitespace after the object.
func parseHeader(header []byte) (map[string]tensorInfo, []string, map[string]string, error) {
	if !utf8.Valid(header) {
		return nil, nil, nil, formatErr("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	tensors := map[string]tensorInfo{}
	var order []string
	var meta map[string]string
	err := decodeObject(dec, func(key string) error {
		if key == "__metadata__" {
			meta = map[string]string{}
			return decodeObject(dec, func(k string) error {
				var v string
				if err := dec.Decode(&v); err != nil {
					return fmt.Errorf("__metadata__ %q: want a string value: %v", k, err)
				}
				meta[k] = v
				return nil
			})
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		var ti tensorInfo
		td := json.NewDecoder(bytes.NewReader(raw))
		td.DisallowUnknownFields()
		if err := td.Decode(&ti); err != nil {
			return fmt.Errorf("tensor %q: want {\"dtype\", \"shape\", \"data_offsets\"}: %v", key, err)
		}
		tensors[key] = ti
		order = append(order, key)
		return nil
	})
	if err != nil {
		return nil, nil, nil, formatErr("header: %v", err)
	}
	if rest := bytes.TrimLeft(header[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, nil, nil, formatErr("header has %d bytes after the JSON object, want only spaces", len(rest))
	}
	if meta == nil {
		return nil, nil, nil, formatErr("header has no __metadata__: not a MedFed model file")
	}
	return tensors, order, meta, nil
}

// decodeObject reads one JSON object from dec, calling value for each key to decode its value,
// and refuses duplicate keys (which encoding/json would otherwise resolve silently).
func decodeObject(dec *json.Decoder, value func(key string) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("got %v, want a JSON object", tok)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("got %v, want an object key", tok)
		}
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if err := value(key); err != nil {
			return err
		}
	}
	_, err = dec.Token() // the closing '}'; a malformed one is an error here
	return err
}

// paramShapes returns the name and shape of every parameter of spec's architecture and the
// total size of the data buffer in bytes, without allocating the parameters. It counts with
// overflow checks, so a spec whose shapes multiply past MaxParams is refused rather than
// built.
func paramShapes(spec Spec) (map[string][]int64, uint64, error) {
	layers, err := spec.build(nil)
	if err != nil {
		return nil, 0, err
	}
	shapes := map[string][]int64{}
	var count int64
	for i, l := range layers {
		for _, p := range l.params() {
			shape := make([]int64, len(p.Shape))
			n := int64(1)
			for j, d := range p.Shape {
				shape[j] = int64(d)
				if d < 1 || n > MaxParams/int64(d) {
					return nil, 0, fmt.Errorf("parameter layers.%d.%s has shape %v, more than %d values", i, p.Name, p.Shape, MaxParams)
				}
				n *= int64(d)
			}
			count += n
			if count > MaxParams {
				return nil, 0, fmt.Errorf("%d parameters after layer %d, want at most %d", count, i, MaxParams)
			}
			shapes["layers."+strconv.Itoa(i)+"."+p.Name] = shape
		}
	}
	return shapes, 4 * uint64(count), nil
}

// numel multiplies a shape already checked by paramShapes.
func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

func firstNonFinite(v []float32) (int, float32, bool) {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i, x, true
		}
	}
	return 0, 0, false
}

// locate names the tensor holding byte off and the element index within it.
func locate(ranges map[string][2]uint64, off uint64) (string, uint64) {
	for name, rg := range ranges {
		if off >= rg[0] && off < rg[1] {
			return name, (off - rg[0]) / 4
		}
	}
	return "?", 0
}
