package inference

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/medfed/medfed/model"
)

// The REST request path reads bodies with parseInferRequest and decodeJSONData, falling back
// to encoding/json. These tests hold it to the behaviour of the encoding/json reader it
// replaced (decodeRESTBefore and decodeJSONDataBefore below, kept verbatim as the
// reference): the same request, the same samples bit for bit, the same error messages.

// TestDecodeJSONData checks the data reader on valid and malformed data of every kind.
func TestDecodeJSONData(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	tests := []struct {
		name, raw, dt string
		want          int
		values        []float32
		err           string
	}{
		{"flat", `[0,1.5,-2]`, "FP32", 3, []float32{0, 1.5, -2}, ""},
		{"nested", `[[[1,2]],[[3,4]]]`, "FP32", 4, []float32{1, 2, 3, 4}, ""},
		{"whitespace", "[ 1 ,\n\t2\r, [ 3 ] ]", "FP32", 3, []float32{1, 2, 3}, ""},
		{"exponents", `[1e2,2.5E-1,-3e+0,4E0]`, "FP32", 4, []float32{100, 0.25, -3, 4}, ""},
		{"shortest float32", `[0.1,0.32941177,3.4028235e38]`, "FP32", 3, []float32{0.1, 0.32941177, math.MaxFloat32}, ""},
		{"negative zero", `[-0,-0.0,-0e5]`, "FP32", 3, []float32{negZero, negZero, negZero}, ""},
		{"int above 2^24 rounds like ParseFloat", `[16777217,16777216]`, "FP32", 2, []float32{16777216, 16777216}, ""},
		{"fp64", `[0.1,1e-300]`, "FP64", 2, []float32{0.1, 0}, ""},
		{"int8", `[-128,0,127]`, "INT8", 3, []float32{-128, 0, 127}, ""},
		{"int64 exponent form", `[1e3,-2E2]`, "INT64", 2, []float32{1000, -200}, ""},
		{"int64 large", `[9007199254740993,999999999999999]`, "INT64", 2, []float32{9007199254740992, 999999999999999}, ""},
		{"uint8 scaled", `[0,255,51]`, "UINT8", 3, []float32{0, 1, float32(51) / 255}, ""},
		{"uint16", `[65535]`, "UINT16", 1, []float32{65535}, ""},
		{"bare number", `7`, "FP32", 1, []float32{7}, ""},

		{"too few", `[1,2]`, "FP32", 3, nil, `input "x": data has 2 values, shape needs 3`},
		{"too many", `[[1,2],[3,4]]`, "FP32", 2, nil, `input "x": data has 4 values, shape needs 2`},
		{"string after the count", `[1,2,"x"]`, "FP32", 2, nil, `value 2 is the string "x"`},
		{"empty", `[]`, "FP32", 1, nil, `data has 0 values, shape needs 1`},
		{"nan string", `[1,"NaN"]`, "FP32", 2, nil, `input "x": value 1 is NaN, inputs must be finite`},
		{"infinity string", `["-Infinity"]`, "FP64", 1, nil, `value 0 is -Inf, inputs must be finite`},
		{"inf string", `["inf"]`, "FP32", 1, nil, `value 0 is +Inf, inputs must be finite`},
		{"other string", `[1,"abc"]`, "FP32", 2, nil, `input "x": value 1 is the string "abc", want a number`},
		{"true", `[true]`, "FP32", 1, nil, `input "x": data holds a boolean at value 0, want numbers (flat or nested arrays)`},
		{"null", `[1,null]`, "FP32", 2, nil, `data holds null at value 1`},
		{"object", `[{"a":1}]`, "FP32", 1, nil, `data holds an object at value 0`},
		{"bare NaN", `[NaN]`, "FP32", 1, nil, `value 0 is NaN, inputs must be finite`},
		{"fp32 overflow", `[1e39]`, "FP32", 1, nil, `value 0 is "1e39", want a number`},
		{"fp64 outside float32", `[1e39]`, "FP64", 1, nil, `value 0 (1e+39) is outside the model's float32 range`},
		{"fp64 overflow", `[1e400]`, "FP64", 1, nil, `value 0 is "1e400", want a number`},
		{"int8 range", `[128]`, "INT8", 1, nil, `value 0 (128) is not a INT8`},
		{"int32 fraction", `[1.5]`, "INT32", 1, nil, `value 0 (1.5) is not a INT32`},
		{"uint8 negative", `[-1]`, "UINT8", 1, nil, `value 0 (-1) is not a UINT8`},
		{"uint8 over 255", `[0,300]`, "UINT8", 2, nil, `value 1 (300) is not a UINT8`},
		{"garbage", `[1x]`, "FP32", 1, nil, `value 0 is "1x", want a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeJSONData(nil, "x", []byte(tt.raw), tt.dt, tt.want)
			ref, refErr := decodeJSONDataBefore("x", []byte(tt.raw), tt.dt, tt.want)
			if errString(err) != errString(refErr) || !sameFloats(got, ref) {
				t.Errorf("decodeJSONData = %v, %v; the encoding/json reader gave %v, %v", got, err, ref, refErr)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalidInput) {
					t.Fatalf("error %v, want ErrInvalidInput mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if !sameFloats(got, tt.values) {
				t.Errorf("values %v, want %v", got, tt.values)
			}
		})
	}
}

// TestDecodeREST runs request bodies through the request reader and the encoding/json reader
// it replaced: both must give the same request and samples, or the same error. Bodies the
// fast path takes and bodies it hands to encoding/json are both here.
func TestDecodeREST(t *testing.T) {
	sm, s := restFixture(t)
	data6 := `[[[0,0.5,1],[2,3,4]]]`
	body := func(fields string) string { return `{"inputs":[{` + fields + `}]}` }
	tests := []struct {
		name string
		body string
		fast bool   // parseInferRequest reads it
		err  string // "" for a good request
	}{
		{"nested", body(`"name":"input","shape":[1,2,3],"datatype":"FP32","data":` + data6), true, ""},
		{"flat shape", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,6]`), true, ""},
		{"two samples", body(`"name":"x","shape":[2,6],"datatype":"FP64","data":[[1,2,3,4,5,6],[-1,-2,-3,-4,-5,-6]]`), true, ""},
		{"whitespace", " {\n \"id\" : \"r1\" ,\t\"inputs\" : [ { \"data\" : [ 1 , 2 , 3 , 4 , 5 , 6 ] , \"datatype\" : \"INT8\" , \"shape\" : [ 1 , 6 ] , \"name\" : \"x\" } ] }\r\n", true, ""},
		{"data before datatype", body(`"data":[0,255,1,2,3,4],"shape":[1,6],"datatype":"UINT8","name":"x"`), true, ""},
		{"parameters and outputs", `{"id":"a","parameters":{"k":[1,{"x":"y\n"}],"s":"\u00e9"},"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","parameters":{"binary_data":false},"data":[1,2,3,4,5,6]}],"outputs":[{"name":"probabilities","parameters":{}}]}`, true, ""},
		{"unknown keys", `{"extra":[true,false,null,-1.5e3],"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,6],"more":{}}]}`, true, ""},
		{"exponents and negative zero", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[-0,1e0,2.5E+1,-3e-2,0.0,4]`), true, ""},

		{"escaped name", body(`"name":"\u0078","shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,6]`), false, ""},
		{"folded key", body(`"NAME":"x","Shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,6]`), false, ""},
		{"repeated key", `{"inputs":[],"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`, false, ""},
		{"null id", `{"id":null,"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`, false, ""},
		{"bare number data", body(`"name":"x","shape":[1,1],"datatype":"FP32","data":5`), false, "shape [1 1], want [N 2 3] or [N 6]"},

		{"bad json", `{"inputs": [`, false, "body is not a JSON inference request: unexpected end of JSON input"},
		{"trailing data", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,6]`) + "x", false, "invalid character 'x' after top-level value"},
		{"leading zero", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[01,2,3,4,5,6]`), false, "body is not a JSON inference request"},
		{"no inputs", `{"inputs":[]}`, true, "request has 0 inputs, model m takes exactly one"},
		{"two inputs", `{"inputs":[{"name":"a"},{"name":"b"}]}`, true, "request has 2 inputs"},
		{"wrong datatype", body(`"name":"x","shape":[1,6],"datatype":"BYTES","data":[1,2,3,4,5,6]`), true, `datatype "BYTES", want FP32`},
		{"wrong shape", body(`"name":"x","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]`), true, "shape [1 5], want [N 2 3] or [N 6] for model m version 1"},
		{"shape not integers", body(`"name":"x","shape":[1,6.0],"datatype":"FP32","data":[1,2,3,4,5,6]`), false, "cannot unmarshal number 6.0 into Go struct field .inputs.shape of type int64"},
		{"no shape", body(`"name":"x","datatype":"FP32","data":[1]`), true, "no shape, want [N 2 3] or [N 6]"},
		{"batch over the limit", body(`"name":"x","shape":[5,6],"datatype":"FP32","data":[1]`), true, "batch size 5, the limit is 4 samples per request"},
		{"no data", body(`"name":"x","shape":[1,6],"datatype":"FP32"`), true, `input "x" has no data`},
		{"null data", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":null`), false, "data holds null at value 0"},
		{"data count", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[1,2,3]`), true, "data has 3 values, shape needs 6"},
		{"nan string", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[1,"NaN",3,4,5,6]`), false, "value 1 is NaN, inputs must be finite"},
		{"bare nan", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[1,NaN,3,4,5,6]`), false, "(NaN and Infinity are not JSON numbers, and inputs must be finite)"},
		{"infinity string", body(`"name":"x","shape":[1,6],"datatype":"FP64","data":[1,2,3,4,5,"-Infinity"]`), false, "value 5 is -Inf, inputs must be finite"},
		{"fp32 overflow", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,1e39]`), true, `value 5 is "1e39", want a number`},
		{"uint8 range", body(`"name":"x","shape":[1,6],"datatype":"UINT8","data":[1,2,3,4,5,256]`), true, "value 5 (256) is not a UINT8"},
		{"int fraction", body(`"name":"x","shape":[1,6],"datatype":"INT16","data":[1,2,3,4,5,0.5]`), true, "value 5 (0.5) is not a INT16"},
		{"value error after a shape error", body(`"name":"x","datatype":"UINT8","data":[1,2,3,4,5,256],"shape":[1,7]`), true, "shape [1 7], want"},
		{"boolean", body(`"name":"x","shape":[1,6],"datatype":"FP32","data":[true,2,3,4,5,6]`), false, "data holds a boolean at value 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req restRequest
			_, fast := parseInferRequest([]byte(tt.body), &req, nil)
			if fast != tt.fast {
				t.Errorf("parseInferRequest read it: %v, want %v", fast, tt.fast)
			}
			got, gotErr := decodeVia(s.decodeREST, sm, tt.body, int64(len(tt.body)))
			want, wantErr := decodeVia(s.decodeRESTBefore, sm, tt.body, int64(len(tt.body)))
			if errString(gotErr) != errString(wantErr) {
				t.Fatalf("error %v, the encoding/json reader gave %v", gotErr, wantErr)
			}
			if tt.err == "" && gotErr != nil {
				t.Fatalf("error %v", gotErr)
			}
			if tt.err != "" && (gotErr == nil || !strings.Contains(gotErr.Error(), tt.err)) {
				t.Fatalf("error %v, want it to mention %q", gotErr, tt.err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded %+v, the encoding/json reader gave %+v", got, want)
			}
		})
	}
}

// TestDecodeRESTBodyLimit checks the body limits with a known and an unknown length.
func TestDecodeRESTBodyLimit(t *testing.T) {
	sm, s := restFixture(t)
	body := `{"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","data":[1,2,3,4,5,6]}]}` + strings.Repeat(" ", 2000)
	for _, length := range []int64{int64(len(body)), -1} {
		_, err := decodeVia(s.decodeREST, sm, body, length)
		_, refErr := decodeVia(s.decodeRESTBefore, sm, body, length)
		if !errors.Is(err, ErrTooLarge) || errString(err) != errString(refErr) {
			t.Errorf("length %d: error %v, want ErrTooLarge as before (%v)", length, err, refErr)
		}
	}
}

// FuzzParseInferRequest holds the fast request reader to encoding/json: whatever it accepts,
// json.Unmarshal must accept and read the same way, and the values it converts on the way
// must be decodeJSONData's. It must never panic.
func FuzzParseInferRequest(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast restRequest
		values, ok := parseInferRequest(body, &fast, nil)
		if !ok {
			return // encoding/json reads it
		}
		var slow restRequest
		if err := json.Unmarshal(body, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", body, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast path read %q as %+v, encoding/json as %+v", body, fast, slow)
		}
		if values != nil {
			in := fast.Inputs[0]
			want, err := decodeJSONData(nil, in.Name, in.Data, in.Datatype, len(values))
			if err != nil || !sameFloats(values, want) {
				t.Fatalf("fast path converted %q to %v, decodeJSONData to %v, %v", in.Data, values, want, err)
			}
		}
	})
}

// FuzzDecodeREST holds the whole request reader to the encoding/json one it replaced: the
// same request and samples, or the same error, for any body.
func FuzzDecodeREST(f *testing.F) {
	sm, s := restFixture(f)
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gotErr := decodeVia(s.decodeREST, sm, string(body), int64(len(body)))
		want, wantErr := decodeVia(s.decodeRESTBefore, sm, string(body), int64(len(body)))
		if errString(gotErr) != errString(wantErr) {
			t.Fatalf("body %q: error %v, the encoding/json reader gave %v", body, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("body %q: decoded %+v, the encoding/json reader gave %+v", body, got, want)
		}
	})
}

// FuzzDecodeJSONData holds the data reader to its encoding/json-era version on any data,
// datatype and count.
func FuzzDecodeJSONData(f *testing.F) {
	f.Add([]byte(`[[0,0.5],[1e2,-0]]`), "FP32", 4)
	f.Add([]byte(`[1,"NaN"]`), "FP64", 2)
	f.Add([]byte(`[255,"x"]`), "UINT8", 2)
	f.Add([]byte(`[16777217,-3]`), "INT32", 2)
	f.Fuzz(func(t *testing.T, raw []byte, dt string, want int) {
		if want < 0 || want > 1<<12 {
			return
		}
		got, err := decodeJSONData(make([]float32, 0, 3), "x", raw, dt, want)
		ref, refErr := decodeJSONDataBefore("x", raw, dt, want)
		if errString(err) != errString(refErr) || !sameFloats(got, ref) {
			t.Fatalf("data %q %s %d: %v, %v; before: %v, %v", raw, dt, want, got, err, ref, refErr)
		}
	})
}

var fuzzBodies = []string{
	`{"id":"1","inputs":[{"name":"input","shape":[1,2,3],"datatype":"FP32","data":[[[0,0.5,1],[2,3,4]]]}]}`,
	`{"inputs":[{"data":[1,2,3,4,5,6],"datatype":"UINT8","shape":[1,6],"name":"x"}],"outputs":[{"name":"predicted_class"}]}`,
	`{"parameters":{"steps":8,"target":[1]},"inputs":[{"name":"x","shape":[1,6],"datatype":"INT64","data":[1,-2,3e2,4,5,-0]}]}`,
	`{"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","data":[1,"NaN",3,4,5,6]}]}`,
	`{"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","data":[1,NaN,3,4,5,6]}]}`,
	`{"inputs":[{"name":"\u0078","Shape":[1,6],"datatype":"FP64","data":[1,2,3,4,5,1e39]}]}`,
	`{"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","data":null}],"id":null}`,
	`{"inputs": [`,
}

// restFixture serves an MLP with input shape [2 3] and a request limit of 4 samples.
func restFixture(t testing.TB) (*ServedModel, *Server) {
	t.Helper()
	spec, err := model.Architecture("mlp", []int{2, 3}, 2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Build(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(Config{NoRateLimit: true, MaxRequestSamples: 4, MaxBodyBytes: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	if err := reg.Publish("m", 1, m, ModelMeta{}); err != nil {
		t.Fatal(err)
	}
	sm, err := reg.Lookup("m", "")
	if err != nil {
		t.Fatal(err)
	}
	return sm, NewServer(reg, nil, nil)
}

// decoded is what a request reader returns, for comparison.
type decoded struct {
	ID         string
	Parameters map[string]json.RawMessage
	X          []uint32 // bits
	N          int
	Names      []string
}

func decodeVia(decode func(http.ResponseWriter, *http.Request, *ServedModel, int) (*restRequest, []float32, int, []string, error), sm *ServedModel, body string, length int64) (*decoded, error) {
	r := httptest.NewRequest("POST", "/v2/models/m/infer", strings.NewReader(body))
	r.ContentLength = length
	if length < 0 {
		r.Body = io.NopCloser(strings.NewReader(body)) // no known length
	}
	req, x, n, names, err := decode(httptest.NewRecorder(), r, sm, 4) // restFixture's MaxRequestSamples
	if err != nil {
		return nil, err
	}
	d := &decoded{ID: req.ID, Parameters: req.Parameters, N: n, Names: names}
	for _, v := range x {
		d.X = append(d.X, math.Float32bits(v))
	}
	return d, nil
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func sameFloats(a, b []float32) bool {
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

// decodeRESTBefore is decodeREST as it was with encoding/json: the reference.
func (s *Server) decodeRESTBefore(w http.ResponseWriter, r *http.Request, sm *ServedModel, maxN int) (*restRequest, []float32, int, []string, error) {
	limit := s.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, nil, 0, nil, fmt.Errorf("%w: body of %d bytes, the limit is %d", ErrTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, nil, 0, nil, fmt.Errorf("%w: body over the limit of %d bytes", ErrTooLarge, limit)
		}
		return nil, nil, 0, nil, fmt.Errorf("%w: reading the body: %v", ErrInvalidInput, err)
	}
	var req restRequest
	if err := json.Unmarshal(body, &req); err != nil {
		hint := ""
		if bytes.Contains(body, []byte("NaN")) || bytes.Contains(body, []byte("Infinity")) {
			hint = " (NaN and Infinity are not JSON numbers, and inputs must be finite)"
		}
		return nil, nil, 0, nil, fmt.Errorf("%w: body is not a JSON inference request: %v%s", ErrInvalidInput, err, hint)
	}
	if len(req.Inputs) != 1 {
		return nil, nil, 0, nil, fmt.Errorf("%w: request has %d inputs, model %s takes exactly one (%q, shape %v, FP32)", ErrInvalidInput, len(req.Inputs), sm.name, InputName, sm.inShape)
	}
	in := req.Inputs[0]
	if err := checkDatatype(in.Name, in.Datatype); err != nil {
		return nil, nil, 0, nil, err
	}
	n, err := sm.checkShape(in.Name, in.Shape, maxN)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	if len(in.Data) == 0 {
		return nil, nil, 0, nil, fmt.Errorf("%w: input %q has no data", ErrInvalidInput, in.Name)
	}
	x, err := decodeJSONDataBefore(in.Name, in.Data, in.Datatype, n*sm.inSize)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	var names []string
	for _, o := range req.Outputs {
		names = append(names, o.Name)
	}
	return &req, x, n, names, nil
}

// decodeJSONDataBefore is decodeJSONData as it was: the reference.
func decodeJSONDataBefore(name string, raw []byte, dt string, want int) ([]float32, error) {
	x := make([]float32, want)
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
		var tok string
		if c == '"' {
			j := i + 1
			for j < len(raw) && raw[j] != '"' {
				j++
			}
			tok = string(raw[i+1 : min(j, len(raw))])
			i = j + 1
			switch strings.ToLower(tok) {
			case "nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf":
			default:
				return nil, fmt.Errorf("%w: input %q: value %d is the string %q, want a number", ErrInvalidInput, name, count, tok)
			}
		} else {
			j := i
			for j < len(raw) && raw[j] != ',' && raw[j] != ']' && raw[j] != ' ' && raw[j] != '\n' && raw[j] != '\t' && raw[j] != '\r' {
				j++
			}
			tok = string(raw[i:j])
			i = j
		}
		if count >= want {
			count++
			continue // count the rest for the error message
		}
		bits := 64
		if dt == "FP32" {
			bits = 32
		}
		v, err := strconv.ParseFloat(tok, bits)
		if err != nil && !strings.Contains(strings.ToLower(tok), "inf") {
			return nil, fmt.Errorf("%w: input %q: value %d is %q, want a number", ErrInvalidInput, name, count, tok)
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
