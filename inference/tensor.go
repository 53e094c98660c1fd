package inference

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/medfed/medfed/internal/pb/oip"
)

// Datatypes accepted for the model input. Values are converted to float32 by value, except
// UINT8, which is read as an 8-bit pixel intensity and divided by 255: the scaling package
// dataset applies to IDX images, so a client can send raw image bytes. BOOL, BYTES, FP16 and
// BF16 are refused.
var inputDatatypes = map[string]int{ // datatype -> bytes per element in raw form
	"FP32": 4, "FP64": 8,
	"INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8,
	"UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8,
}

const acceptedDatatypes = "FP32 (also FP64, INT8-64, UINT16-64 by value, UINT8 as pixels / 255)"

func checkDatatype(name, dt string) error {
	if _, ok := inputDatatypes[dt]; !ok {
		return fmt.Errorf("%w: input %q: datatype %q, want %s", ErrInvalidInput, name, dt, acceptedDatatypes)
	}
	return nil
}

// checkShape validates the shape of an input tensor against the model and returns the
// batch size. Accepted: [N, sample shape...] or [N, values per sample].
func (s *ServedModel) checkShape(name string, shape []int64, maxN int) (int, error) {
	want := "[N " + strings.Trim(fmt.Sprint(s.inShape), "[]") + "]"
	if len(s.inShape) > 1 {
		want += fmt.Sprintf(" or [N %d]", s.inSize)
	}
	if len(shape) == 0 {
		return 0, fmt.Errorf("%w: input %q: no shape, want %s", ErrInvalidInput, name, want)
	}
	for _, d := range shape {
		if d < 0 || d > math.MaxInt32 {
			return 0, fmt.Errorf("%w: input %q: shape %v, want %s", ErrInvalidInput, name, shape, want)
		}
	}
	ok := len(shape) == 2 && shape[1] == int64(s.inSize)
	if !ok && len(shape) == len(s.inShape)+1 {
		ok = true
		for i, d := range s.inShape {
			if shape[i+1] != int64(d) {
				ok = false
			}
		}
	}
	if !ok {
		return 0, fmt.Errorf("%w: input %q: shape %v, want %s for model %s version %d", ErrInvalidInput, name, shape, want, s.name, s.version)
	}
	n := shape[0]
	if n < 1 {
		return 0, fmt.Errorf("%w: input %q: batch size %d, want at least 1", ErrInvalidInput, name, n)
	}
	if n > int64(maxN) {
		return 0, fmt.Errorf("%w: input %q: batch size %d, the limit is %d samples per request", ErrTooLarge, name, n, maxN)
	}
	return int(n), nil
}

// convert turns one value of datatype dt into the model's float32, refusing NaN, Inf and
// values outside the datatype's range.
func convert(name string, i int, dt string, v float64) (float32, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w: input %q: value %d is %v, inputs must be finite", ErrInvalidInput, name, i, v)
	}
	lo, hi := 0.0, 0.0
	switch dt {
	case "FP32":
		if math.Abs(v) > math.MaxFloat32 {
			return 0, fmt.Errorf("%w: input %q: value %d (%g) overflows FP32", ErrInvalidInput, name, i, v)
		}
		return float32(v), nil
	case "FP64":
		if math.Abs(v) > math.MaxFloat32 {
			return 0, fmt.Errorf("%w: input %q: value %d (%g) is outside the model's float32 range", ErrInvalidInput, name, i, v)
		}
		return float32(v), nil
	case "INT8":
		lo, hi = math.MinInt8, math.MaxInt8
	case "INT16":
		lo, hi = math.MinInt16, math.MaxInt16
	case "INT32":
		lo, hi = math.MinInt32, math.MaxInt32
	case "INT64":
		lo, hi = math.MinInt64, math.MaxInt64
	case "UINT8":
		lo, hi = 0, math.MaxUint8
	case "UINT16":
		lo, hi = 0, math.MaxUint16
	case "UINT32":
		lo, hi = 0, math.MaxUint32
	case "UINT64":
		lo, hi = 0, math.MaxUint64
	}
	if v != math.Trunc(v) || v < lo || v > hi {
		return 0, fmt.Errorf("%w: input %q: value %d (%g) is not a %s", ErrInvalidInput, name, i, v, dt)
	}
	if dt == "UINT8" {
		return float32(v) / 255, nil
	}
	return float32(v), nil
}

// decodeJSONData reads the "data" of a REST input tensor: numbers, flat or nested in arrays
// (row-major, nesting is ignored), exactly want of them, into dst when it has the capacity
// (a new slice otherwise). The strings "NaN", "Infinity" and "-Infinity", which some
// encoders emit for non-finite floats, are recognised and refused.
func decodeJSONData(dst []float32, name string, raw []byte, dt string, want int) ([]float32, error) {
	var x []float32
	if cap(dst) >= want {
		x = dst[:want]
	} else {
		x = make([]float32, want)
	}
	bits := 64
	if dt == "FP32" {
		bits = 32
	}
	count := 0
	for i := 0; i < len(raw); {
		c := raw[i]
		switch c {
		case '[', ']', ',', ' ', '\t', '\n', '\r':
			i++
			continue
		case '{', 't', 'f', 'n':
			return nil, fmt.Errorf("%w: input %q: data holds %s at value %d, want numbers (flat or nested arrays)", ErrInvalidInput, name, tokenKind(c), count)
		}
		var tok []byte
		if c == '"' {
			j := i + 1
			for j < len(raw) && raw[j] != '"' {
				j++
			}
			tok = raw[i+1 : min(j, len(raw))]
			i = j + 1
			switch strings.ToLower(string(tok)) {
			case "nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf":
			default:
				return nil, fmt.Errorf("%w: input %q: value %d is the string %q, want a number", ErrInvalidInput, name, count, string(tok))
			}
		} else {
			j := i
			for j < len(raw) && raw[j] != ',' && raw[j] != ']' && raw[j] != ' ' && raw[j] != '\n' && raw[j] != '\t' && raw[j] != '\r' {
				j++
			}
			tok = raw[i:j]
			i = j
		}
		if count >= want {
			count++
			continue // count the rest for the error message
		}
		v, ok := parseNumber(tok, bits)
		if !ok && !strings.Contains(strings.ToLower(string(tok)), "inf") {
			return nil, fmt.Errorf("%w: input %q: value %d is %q, want a number", ErrInvalidInput, name, count, string(tok))
		}
		f, err := convert(name, count, dt, v)
		if err != nil {
			return nil, err
		}
		x[count] = f
		count++
	}
	if count != want {
		return nil, fmt.Errorf("%w: input %q: data has %d values, shape needs %d", ErrInvalidInput, name, count, want)
	}
	return x, nil
}

// parseNumber is strconv.ParseFloat(tok, bits), and whether it succeeded. Even when it
// fails, v is ParseFloat's (±Inf out of range, 0 for a syntax error).
func parseNumber(tok []byte, bits int) (v float64, ok bool) {
	if v, ok := parseSmallInt(tok, bits); ok {
		return v, true
	}
	// string(tok) as an argument does not escape: no allocation for short numbers.
	v, err := strconv.ParseFloat(string(tok), bits)
	return v, err == nil
}

// parseSmallInt is strconv.ParseFloat(tok, bits) for the tokens it reads exactly without
// rounding: an optional minus sign and up to 15 decimal digits whose value fits the
// mantissa (2^24 for bits 32, 2^53 for 64). It keeps the sign of "-0". ok is false for
// every other token.
func parseSmallInt(tok []byte, bits int) (v float64, ok bool) {
	neg := len(tok) > 0 && tok[0] == '-'
	digits := tok
	if neg {
		digits = tok[1:]
	}
	if len(digits) == 0 || len(digits) > 15 {
		return 0, false
	}
	var m uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		m = m*10 + uint64(c-'0')
	}
	if bits == 32 && m > 1<<24 {
		return 0, false
	}
	v = float64(m)
	if neg {
		v = -v
	}
	return v, true
}

func tokenKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case 'n':
		return "null"
	}
	return "a boolean"
}

// decodeRaw reads little-endian raw contents (gRPC raw_input_contents).
func decodeRaw(name string, raw []byte, dt string, want int) ([]float32, error) {
	size := inputDatatypes[dt]
	if len(raw) != want*size {
		return nil, fmt.Errorf("%w: input %q: raw contents of %d bytes, shape and datatype %s need %d", ErrInvalidInput, name, len(raw), dt, want*size)
	}
	x := make([]float32, want)
	for i := range x {
		b := raw[i*size:]
		var v float64
		switch dt {
		case "FP32":
			f := math.Float32frombits(binary.LittleEndian.Uint32(b))
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return nil, fmt.Errorf("%w: input %q: value %d is %v, inputs must be finite", ErrInvalidInput, name, i, f)
			}
			x[i] = f
			continue
		case "FP64":
			v = math.Float64frombits(binary.LittleEndian.Uint64(b))
		case "INT8":
			v = float64(int8(b[0]))
		case "INT16":
			v = float64(int16(binary.LittleEndian.Uint16(b)))
		case "INT32":
			v = float64(int32(binary.LittleEndian.Uint32(b)))
		case "INT64":
			v = float64(int64(binary.LittleEndian.Uint64(b)))
		case "UINT8":
			x[i] = float32(b[0]) / 255
			continue
		case "UINT16":
			v = float64(binary.LittleEndian.Uint16(b))
		case "UINT32":
			v = float64(binary.LittleEndian.Uint32(b))
		case "UINT64":
			v = float64(binary.LittleEndian.Uint64(b))
		}
		f, err := convert(name, i, dt, v)
		if err != nil {
			return nil, err
		}
		x[i] = f
	}
	return x, nil
}

// decodeContents reads typed gRPC contents: the field that matches the datatype must hold
// exactly want values.
func decodeContents(name string, c *oip.InferTensorContents, dt string, want int) ([]float32, error) {
	var n int
	var field string
	var at func(i int) float64
	switch dt {
	case "FP32":
		field, n = "fp32_contents", len(c.GetFp32Contents())
		at = func(i int) float64 { return float64(c.Fp32Contents[i]) }
	case "FP64":
		field, n = "fp64_contents", len(c.GetFp64Contents())
		at = func(i int) float64 { return c.Fp64Contents[i] }
	case "INT8", "INT16", "INT32":
		field, n = "int_contents", len(c.GetIntContents())
		at = func(i int) float64 { return float64(c.IntContents[i]) }
	case "INT64":
		field, n = "int64_contents", len(c.GetInt64Contents())
		at = func(i int) float64 { return float64(c.Int64Contents[i]) }
	case "UINT8", "UINT16", "UINT32":
		field, n = "uint_contents", len(c.GetUintContents())
		at = func(i int) float64 { return float64(c.UintContents[i]) }
	case "UINT64":
		field, n = "uint64_contents", len(c.GetUint64Contents())
		at = func(i int) float64 { return float64(c.Uint64Contents[i]) }
	}
	if n != want {
		return nil, fmt.Errorf("%w: input %q: datatype %s wants %d values in %s, got %d", ErrInvalidInput, name, dt, want, field, n)
	}
	x := make([]float32, want)
	for i := range x {
		v := at(i)
		if dt == "FP32" { // exact, no range check needed beyond finiteness
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w: input %q: value %d is %v, inputs must be finite", ErrInvalidInput, name, i, v)
			}
			x[i] = float32(v)
			continue
		}
		f, err := convert(name, i, dt, v)
		if err != nil {
			return nil, err
		}
		x[i] = f
	}
	return x, nil
}

// Output tensor names.
const (
	OutputProbabilities  = "probabilities"   // FP32 [N, classes]
	OutputPredictedClass = "predicted_class" // INT64 [N]
	OutputAttributions   = "attributions"    // FP32 [N, input shape...], explain only
)

// selectOutputs validates requested output names; none requested means all of available.
func selectOutputs(requested []string, available []string) ([]string, error) {
	if len(requested) == 0 {
		return available, nil
	}
	for _, r := range requested {
		found := false
		for _, a := range available {
			found = found || a == r
		}
		if !found {
			return nil, fmt.Errorf("%w: requested output %q, want one of %s", ErrInvalidInput, r, strings.Join(available, ", "))
		}
	}
	return requested, nil
}

// argmax returns the predicted class of each of n rows of probabilities.
func argmax(p []float32, n, classes int) []int64 {
	out := make([]int64, n)
	for i := range n {
		row := p[i*classes : (i+1)*classes]
		best := 0
		for c, v := range row {
			if v > row[best] {
				best = c
			}
		}
		out[i] = int64(best)
	}
	return out
}
