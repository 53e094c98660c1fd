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
	"slices"
	"strconv"
	"time"
)

// Handler returns the REST side of the protocol:
//
//	GET  /v2/health/live                              (no authentication)
//	GET  /v2/health/ready                             (no authentication; 503 until a model is published)
//	GET  /v2                                          server metadata
//	GET  /v2/models/{name}[/versions/{version}]       model metadata
//	GET  /v2/models/{name}[/versions/{version}]/ready model readiness
//	POST /v2/models/{name}[/versions/{version}]/infer inference
//	POST /v2/models/{name}[/versions/{version}]/explain attributions (MedFed extension)
//	GET  /metrics                                     per-caller counters, Prometheus text
//
// Every route but the two health checks needs an authenticated caller and counts against
// its rate limit. Errors are the protocol's {"error": "..."} with 400 (invalid or too large
// request), 401, 404 (unknown model or version), 429 or 503.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"live": true})
	})
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusOK
		if !s.reg.Ready() {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]bool{"ready": code == http.StatusOK})
	})
	s.route(mux, "GET /v2", "server_metadata", func(w http.ResponseWriter, r *http.Request) (int, error) {
		writeJSON(w, http.StatusOK, map[string]any{"name": "medfed", "version": serverVersion(), "extensions": []string{"explain"}})
		return 0, nil
	})
	s.route(mux, "GET /v2/models/{name}", "model_metadata", s.metadata)
	s.route(mux, "GET /v2/models/{name}/versions/{version}", "model_metadata", s.metadata)
	s.route(mux, "GET /v2/models/{name}/ready", "model_ready", s.ready)
	s.route(mux, "GET /v2/models/{name}/versions/{version}/ready", "model_ready", s.ready)
	s.route(mux, "POST /v2/models/{name}/infer", "infer", s.inferREST)
	s.route(mux, "POST /v2/models/{name}/versions/{version}/infer", "infer", s.inferREST)
	s.route(mux, "POST /v2/models/{name}/explain", "explain", s.explainREST)
	s.route(mux, "POST /v2/models/{name}/versions/{version}/explain", "explain", s.explainREST)
	s.route(mux, "GET /metrics", "metrics", func(w http.ResponseWriter, r *http.Request) (int, error) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.m.write(w, s.reg)
		return 0, nil
	})
	return mux
}

// route registers an authenticated, rate-limited, counted endpoint. h returns the number of
// samples it served, or an error that route writes as the protocol's error JSON.
func (s *Server) route(mux *http.ServeMux, pattern, endpoint string, h func(http.ResponseWriter, *http.Request) (int, error)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		caller, wait, err := s.admit(r.TLS, r.Header.Get("Authorization"))
		samples := 0
		if err == nil {
			samples, err = h(w, r)
		}
		if err != nil {
			status := httpStatus(err)
			switch status {
			case http.StatusUnauthorized:
				w.Header().Set("WWW-Authenticate", `Bearer realm="medfed"`)
			case http.StatusTooManyRequests:
				w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			}
			if status >= 500 {
				s.log.Error("inference request failed", "endpoint", endpoint, "caller", caller, "err", err)
			}
			writeJSON(w, status, map[string]string{"error": err.Error()})
		}
		if caller == "" {
			caller = "anonymous"
		}
		s.m.request(requestKey{caller: caller, protocol: "rest", endpoint: endpoint, code: codeOf(err)}, samples)
	})
}

func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrModelNotFound), errors.Is(err, ErrVersionNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalidInput), errors.Is(err, ErrTooLarge):
		return http.StatusBadRequest
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":"encoding the response failed"}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// tensorMeta is the protocol's metadata of one tensor.
type tensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// InputName is the name the metadata gives the model's single input. Requests may name
// their one input anything.
const InputName = "input"

func (sm *ServedModel) tensors() (inputs, outputs []tensorMeta) {
	in := []int64{-1}
	for _, d := range sm.inShape {
		in = append(in, int64(d))
	}
	return []tensorMeta{{Name: InputName, Datatype: "FP32", Shape: in}},
		[]tensorMeta{
			{Name: OutputProbabilities, Datatype: "FP32", Shape: []int64{-1, int64(sm.classes)}},
			{Name: OutputPredictedClass, Datatype: "INT64", Shape: []int64{-1}},
		}
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request) (int, error) {
	name := r.PathValue("name")
	sm, err := s.reg.Lookup(name, r.PathValue("version"))
	if err != nil {
		return 0, err
	}
	versions, err := s.reg.Versions(name)
	if err != nil {
		return 0, err
	}
	vs := make([]string, len(versions))
	for i, v := range versions {
		vs[i] = strconv.FormatUint(v, 10)
	}
	inputs, outputs := sm.tensors()
	params := map[string]any{"version": strconv.FormatUint(sm.version, 10)}
	if sm.meta.FeatureNames != nil {
		params["feature_names"] = sm.meta.FeatureNames
	}
	if sm.meta.ClassNames != nil {
		params["class_names"] = sm.meta.ClassNames
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": sm.name, "versions": vs, "platform": "medfed",
		"inputs": inputs, "outputs": outputs, "parameters": params,
	})
	return 0, nil
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) (int, error) {
	sm, err := s.reg.Lookup(r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		return 0, err
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": sm.name, "version": strconv.FormatUint(sm.version, 10), "ready": true})
	return 0, nil
}

// restRequest is the protocol's JSON inference request.
type restRequest struct {
	ID         string                     `json:"id"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Inputs     []restInput                `json:"inputs"`
	Outputs    []restOutput               `json:"outputs"`
}

// restInput is one input tensor of a restRequest. It and restOutput are aliases of unnamed
// struct types, as the fields were declared before: encoding/json names a struct type in
// its error messages ("Go struct field .inputs.shape"), which clients see.
type restInput = struct {
	Name     string          `json:"name"`
	Shape    []int64         `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

// restOutput is one requested output of a restRequest.
type restOutput = struct {
	Name string `json:"name"`
}

// decodeREST reads and validates a request body for model version sm. The returned
// samples come from s.floats; a caller that is done with them may return them with
// putFloats.
func (s *Server) decodeREST(w http.ResponseWriter, r *http.Request, sm *ServedModel, maxN int) (*restRequest, []float32, int, []string, error) {
	limit := s.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, nil, 0, nil, fmt.Errorf("%w: body of %d bytes, the limit is %d", ErrTooLarge, r.ContentLength, limit)
	}
	buf := s.getBytes()
	defer s.putBytes(buf)
	if r.ContentLength > 0 { // room for the body and io.EOF; a larger claim grows as it arrives
		*buf = slices.Grow(*buf, int(min(r.ContentLength, maxPooledBytes))+1)
	}
	body, err := readAll(*buf, http.MaxBytesReader(w, r.Body, limit))
	*buf = body
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, nil, 0, nil, fmt.Errorf("%w: body over the limit of %d bytes", ErrTooLarge, limit)
		}
		return nil, nil, 0, nil, fmt.Errorf("%w: reading the body: %v", ErrInvalidInput, err)
	}
	var req restRequest
	x := s.getFloats()
	values, ok := parseInferRequest(body, &req, x)
	if !ok {
		req, values = restRequest{}, nil
		if err := json.Unmarshal(body, &req); err != nil {
			hint := ""
			if bytes.Contains(body, []byte("NaN")) || bytes.Contains(body, []byte("Infinity")) {
				hint = " (NaN and Infinity are not JSON numbers, and inputs must be finite)"
			}
			return nil, nil, 0, nil, fmt.Errorf("%w: body is not a JSON inference request: %v%s", ErrInvalidInput, err, hint)
		}
	}
	// The fast path's Data point into buf, which goes back to the pool on return.
	defer func() {
		for i := range req.Inputs {
			req.Inputs[i].Data = nil
		}
	}()
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
	if len(values) == n*sm.inSize { // converted already, all of them
		x = values
	} else if x, err = decodeJSONData(x, in.Name, in.Data, in.Datatype, n*sm.inSize); err != nil {
		return nil, nil, 0, nil, err
	}
	var names []string
	for _, o := range req.Outputs {
		names = append(names, o.Name)
	}
	return &req, x, n, names, nil
}

// readAll is io.ReadAll appending to b.
func readAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}

func (s *Server) inferREST(w http.ResponseWriter, r *http.Request) (int, error) {
	sm, err := s.reg.Lookup(r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		return 0, err
	}
	req, x, n, names, err := s.decodeREST(w, r, sm, s.cfg.MaxRequestSamples)
	if err != nil {
		return 0, err
	}
	outs, err := selectOutputs(names, []string{OutputProbabilities, OutputPredictedClass})
	if err != nil {
		s.putFloats(x)
		return 0, err
	}
	probs, classes, err := s.infer(r.Context(), sm, x, n)
	if err != nil {
		// x may still be queued in the batcher (a cancelled request): leave it to the GC.
		return 0, err
	}
	s.putFloats(x) // the batch that read x has run
	buf := s.getBytes()
	defer s.putBytes(buf)
	b := slices.Grow((*buf)[:0], 64+n*sm.classes*12)
	b = appendResponseHead(b, sm, req.ID)
	for i, o := range outs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOutput(b, o, sm, n, probs, classes, nil)
	}
	b = append(b, "]}\n"...)
	*buf = b
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
	return n, nil
}

func appendResponseHead(b []byte, sm *ServedModel, id string) []byte {
	b = append(b, `{"model_name":`...)
	b = strconv.AppendQuote(b, sm.name)
	b = append(b, `,"model_version":"`...)
	b = strconv.AppendUint(b, sm.version, 10)
	b = append(b, '"')
	if id != "" {
		b = append(b, `,"id":`...)
		b = strconv.AppendQuote(b, id)
	}
	return append(b, `,"outputs":[`...)
}

func appendOutput(b []byte, name string, sm *ServedModel, n int, probs []float32, classes []int64, attr []float32) []byte {
	b = append(b, `{"name":"`...)
	b = append(b, name...)
	b = append(b, `","datatype":"`...)
	switch name {
	case OutputProbabilities:
		b = append(b, `FP32","shape":[`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(sm.classes), 10)
		b = append(b, `],"data":[`...)
		b = appendFloats(b, probs)
	case OutputPredictedClass:
		b = append(b, `INT64","shape":[`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, `],"data":[`...)
		for i, c := range classes {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, c, 10)
		}
	case OutputAttributions:
		b = append(b, `FP32","shape":[`...)
		b = strconv.AppendInt(b, int64(n), 10)
		for _, d := range sm.inShape {
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(d), 10)
		}
		b = append(b, `],"data":[`...)
		b = appendFloats(b, attr)
	}
	return append(b, "]}"...)
}

// appendFloats writes float32 values in the shortest form that reads back exactly.
func appendFloats(b []byte, v []float32) []byte {
	for i, f := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
	}
	return b
}

// explainParams are the request parameters explain understands.
type explainParams struct {
	Method string `json:"method"`
	Steps  int    `json:"steps"`
	Target []int  `json:"target"`
}

// explainREST answers an inference request body with attributions: outputs "attributions"
// (the input's shape), "probabilities" and "predicted_class", and per sample an
// "explanations" entry with the method, the target class, F(x) and F(baseline) for it, the
// sum of the attributions and, for a model with feature names, the attributions by name.
func (s *Server) explainREST(w http.ResponseWriter, r *http.Request) (int, error) {
	sm, err := s.reg.Lookup(r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		return 0, err
	}
	req, x, n, names, err := s.decodeREST(w, r, sm, s.cfg.MaxExplainSamples)
	if err != nil {
		return 0, err
	}
	outs, err := selectOutputs(names, []string{OutputAttributions, OutputProbabilities, OutputPredictedClass})
	if err != nil {
		return 0, err
	}
	var p explainParams
	for k, v := range req.Parameters {
		var err error
		switch k {
		case "method":
			err = json.Unmarshal(v, &p.Method)
		case "steps":
			err = json.Unmarshal(v, &p.Steps)
			if err == nil && (p.Steps < 1 || p.Steps > s.cfg.MaxIGSteps) {
				err = fmt.Errorf("%d, want 1 to %d", p.Steps, s.cfg.MaxIGSteps)
			}
		case "target":
			err = json.Unmarshal(v, &p.Target)
		}
		if err != nil {
			return 0, fmt.Errorf("%w: parameter %q: %v", ErrInvalidInput, k, err)
		}
	}
	e, err := sm.Explain(r.Context(), x, n, ExplainOptions(p), s.cfg.IGSteps)
	if err != nil {
		return 0, err
	}
	b := appendResponseHead(nil, sm, req.ID)
	for i, o := range outs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOutput(b, o, sm, n, e.Probabilities, e.Predicted, e.Attributions)
	}
	b = append(b, `],"explanations":`...)
	type entry struct {
		Method              string             `json:"method"`
		Steps               int                `json:"steps"`
		Baseline            string             `json:"baseline"`
		TargetClass         int                `json:"target_class"`
		TargetProbability   float32            `json:"target_probability"`
		BaselineProbability float32            `json:"baseline_probability"`
		AttributionSum      float64            `json:"attribution_sum"`
		Features            map[string]float32 `json:"features,omitempty"`
	}
	entries := make([]entry, n)
	for i := range n {
		a := e.Attributions[i*sm.inSize : (i+1)*sm.inSize]
		sum := 0.0
		for _, v := range a {
			sum += float64(v)
		}
		entries[i] = entry{Method: e.Method, Steps: e.Steps, Baseline: "zeros", TargetClass: e.Target[i],
			TargetProbability: e.TargetProbability[i], BaselineProbability: e.BaselineProbability[i], AttributionSum: sum}
		if sm.meta.FeatureNames != nil {
			entries[i].Features = make(map[string]float32, len(a))
			for j, name := range sm.meta.FeatureNames {
				entries[i].Features[name] = a[j]
			}
		}
	}
	eb, err := json.Marshal(entries)
	if err != nil {
		return 0, err
	}
	b = append(append(b, eb...), "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	return n, nil
}

// retryAfter is exported for the gRPC side's trailer.
func retryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}
