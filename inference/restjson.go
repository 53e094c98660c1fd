package inference

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// parseInferRequest reads the common form of a REST inference request body into req without
// encoding/json: plain (unescaped) strings, integer shapes, and "data" arrays, flat or nested,
// that hold only numbers. It is strict (the JSON grammar, no trailing data) and returns false
// for anything it does not read exactly as json.Unmarshal into a restRequest would: escaped
// or non-ASCII keys, a key encoding/json would match case-insensitively, a repeated key, a
// null or a value of the wrong type, data that is not an array of numbers, very deep
// nesting, or any malformed body. The caller then decodes the body with encoding/json, which
// gives the same request or the same error as before, so only well-formed requests take the
// fast path and every error message is encoding/json's or the validators'.
//
// When the first input names its datatype (one the model accepts) before its data, the data
// are also converted as decodeJSONData converts them, appended to dst[:0]: values is the
// result when every value converted, nil otherwise (decodeJSONData then reports why, after
// the request's other checks, in their usual order).
//
// The Data of req's inputs are sub-slices of body; everything else is copied.
func parseInferRequest(body []byte, req *restRequest, dst []float32) (values []float32, ok bool) {
	s := jsonScanner{b: body, values: dst[:0]}
	if !s.request(req) {
		return nil, false
	}
	if !s.converted {
		return nil, true
	}
	return s.values, true
}

func (s *jsonScanner) request(req *restRequest) bool {
	var seen uint8
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			v, ok := s.plainString()
			req.ID = string(v)
			return ok && once(&seen, 1)
		case "parameters":
			p, ok := s.rawObject()
			req.Parameters = p
			return ok && once(&seen, 2)
		case "inputs":
			return s.inputs(req) && once(&seen, 4)
		case "outputs":
			return s.outputs(req) && once(&seen, 8)
		}
		return s.skipUnknown(key, "id", "parameters", "inputs", "outputs")
	})
	if !ok {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

// maxNesting bounds the arrays and objects the fast path follows; deeper bodies go to
// encoding/json.
const maxNesting = 64

// jsonScanner is a strict cursor over a JSON text. Its methods skip leading whitespace and
// return false on anything they do not read exactly.
type jsonScanner struct {
	b     []byte
	i     int
	depth int

	values    []float32 // the first input's data, converted
	converted bool      // values holds all of them
}

// once records bit in seen and reports whether it was new: a repeated key leaves the fast
// path, since encoding/json merges repeated slice fields in ways not worth copying.
func once(seen *uint8, bit uint8) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips whitespace and consumes c if it comes next.
func (s *jsonScanner) next(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *jsonScanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// object reads an object, calling field with each key, positioned at the key's value,
// which field must read.
func (s *jsonScanner) object(field func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.depth++; s.depth > maxNesting {
		return false
	}
	defer func() { s.depth-- }()
	if s.next('}') {
		return true
	}
	for {
		key, ok := s.plainString()
		if !ok || !s.next(':') || !field(key) {
			return false
		}
		if s.next(',') {
			continue
		}
		return s.next('}')
	}
}

// array reads an array, calling elem positioned at each element, which elem must read.
func (s *jsonScanner) array(elem func() bool) bool {
	if !s.next('[') {
		return false
	}
	if s.depth++; s.depth > maxNesting {
		return false
	}
	defer func() { s.depth-- }()
	if s.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.next(',') {
			continue
		}
		return s.next(']')
	}
}

// plainString reads a string without escapes or invalid UTF-8, whose bytes are its value.
func (s *jsonScanner) plainString() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			v := s.b[start:j]
			return v, utf8.Valid(v)
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// number reads a JSON number and returns its text.
func (s *jsonScanner) number() ([]byte, bool) {
	s.ws()
	b, i := s.b, s.i
	digits := func() bool {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if !digits() {
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return nil, false
		}
	}
	tok := b[s.i:i]
	s.i = i
	return tok, true
}

// skip reads any JSON value.
func (s *jsonScanner) skip() bool {
	switch s.peek() {
	case '{':
		return s.object(func([]byte) bool { return s.skip() })
	case '[':
		return s.array(s.skip)
	case '"':
		return s.skipString()
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	_, ok := s.number()
	return ok
}

func (s *jsonScanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return false
	}
	s.i += len(lit)
	return true
}

// skipString reads a string with any valid escapes.
func (s *jsonScanner) skipString() bool {
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			j++
			if j >= len(s.b) {
				return false
			}
			switch s.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.b) {
					return false
				}
				for _, h := range s.b[j+1 : j+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

// skipUnknown skips the value of a key the destination struct does not have, unless
// encoding/json would fold the key onto one of its fields.
func (s *jsonScanner) skipUnknown(key []byte, fields ...string) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for _, f := range fields {
		if bytes.EqualFold(key, []byte(f)) {
			return false
		}
	}
	return s.skip()
}

// rawObject reads an object into a map of copies of its values' text.
func (s *jsonScanner) rawObject() (map[string]json.RawMessage, bool) {
	m := map[string]json.RawMessage{}
	ok := s.object(func(key []byte) bool {
		s.ws()
		start := s.i
		if !s.skip() {
			return false
		}
		m[string(key)] = bytes.Clone(s.b[start:s.i])
		return true
	})
	return m, ok
}

func (s *jsonScanner) inputs(req *restRequest) bool {
	req.Inputs = []restInput{}
	return s.array(func() bool {
		req.Inputs = append(req.Inputs, restInput{})
		in := &req.Inputs[len(req.Inputs)-1]
		var seen uint8
		first := len(req.Inputs) == 1
		return s.object(func(key []byte) bool {
			switch string(key) {
			case "name":
				v, ok := s.plainString()
				in.Name = string(v)
				return ok && once(&seen, 1)
			case "shape":
				v, ok := s.int64s()
				in.Shape = v
				return ok && once(&seen, 2)
			case "datatype":
				v, ok := s.plainString()
				in.Datatype = string(v)
				return ok && once(&seen, 4)
			case "data":
				dt := ""
				if first && seen&4 != 0 {
					dt = in.Datatype
				}
				v, ok := s.numberArray(dt)
				in.Data = v
				return ok && once(&seen, 8)
			}
			return s.skipUnknown(key, "name", "shape", "datatype", "data")
		})
	})
}

func (s *jsonScanner) outputs(req *restRequest) bool {
	req.Outputs = []restOutput{}
	return s.array(func() bool {
		var name []byte
		named := false
		ok := s.object(func(key []byte) bool {
			if string(key) == "name" {
				var ok bool
				name, ok = s.plainString()
				ok = ok && !named
				named = true
				return ok
			}
			return s.skipUnknown(key, "name")
		})
		req.Outputs = append(req.Outputs, restOutput{Name: string(name)})
		return ok
	})
}

// int64s reads an array of integers, as encoding/json reads a []int64.
func (s *jsonScanner) int64s() ([]int64, bool) {
	v := []int64{}
	ok := s.array(func() bool {
		tok, ok := s.number()
		if !ok {
			return false
		}
		n, err := strconv.ParseInt(string(tok), 10, 64)
		v = append(v, n)
		return err == nil
	})
	return v, ok
}

// numberArray reads an array, nested to any depth up to maxNesting, of nothing but numbers,
// and returns its text. For a datatype dt the model accepts, it also converts the numbers
// into s.values, setting s.converted if all of them converted.
func (s *jsonScanner) numberArray(dt string) ([]byte, bool) {
	s.ws()
	start := s.i
	if s.peek() != '[' {
		return nil, false
	}
	_, convert := inputDatatypes[dt]
	bits := 64
	if dt == "FP32" {
		bits = 32
	}
	if convert {
		defer func() { s.converted = convert }()
	}
	depth := 0
	for {
		// A value: an array or a number.
		if s.peek() == '[' {
			s.i++
			if depth++; depth > maxNesting {
				return nil, false
			}
			if s.peek() != ']' {
				continue
			}
			s.i++
			depth--
		} else if tok, ok := s.number(); !ok {
			return nil, false
		} else if convert {
			convert = s.convert(tok, dt, bits)
		}
		// After a value: closing brackets, then a comma before the next value or the end.
		for {
			if depth == 0 {
				return s.b[start:s.i], true
			}
			c := s.peek()
			if c == ']' {
				s.i++
				depth--
				continue
			}
			if c != ',' {
				return nil, false
			}
			s.i++
			break
		}
	}
}

// convert appends the value of a number token to s.values as decodeJSONData reads it.
func (s *jsonScanner) convert(tok []byte, dt string, bits int) bool {
	v, ok := parseNumber(tok, bits)
	if !ok {
		return false
	}
	f, err := convert("", len(s.values), dt, v)
	s.values = append(s.values, f)
	return err == nil
}
