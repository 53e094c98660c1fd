package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // decode JPEG inputs
	"image/png"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/medfed/medfed/crypto/pki"
	"github.com/medfed/medfed/dataset"
)

// predictConfig is what `medfed predict` needs.
type predictConfig struct {
	Coordinator, Model, Version, Input string
	StandardizeFrom                    string
	JSON, Explain, Insecure            bool
	Token                              string
	TLSCert, TLSKey, TLSCA             string
	Batch                              int
	Timeout                            time.Duration
}

func runPredict(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := predictConfig{Batch: 64, Timeout: time.Minute}
	fs := flag.NewFlagSet("medfed predict", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Coordinator, "coordinator", "", "inference endpoint of a coordinator node: host:port or an http(s):// URL (required)")
	fs.StringVar(&cfg.Model, "model", "", "model name: the federation name (required)")
	fs.StringVar(&cfg.Version, "version", "", "model version (default: the newest)")
	fs.StringVar(&cfg.Input, "input", "", "an IDX image file, a CSV table with a header row, a PNG or JPEG image, or a folder of them (required)")
	fs.StringVar(&cfg.StandardizeFrom, "standardize-from", "", "for CSV inputs: scale each feature by its mean and standard deviation in `TABLE`, the hospital's training data (CSV), as its client node did before training; table models take features scaled that way")
	fs.BoolVar(&cfg.JSON, "json", false, "print one JSON object with the predictions on stdout, nothing else")
	fs.BoolVar(&cfg.Explain, "explain", false, "for image inputs, write the attribution map (integrated gradients) as a PNG heat map to <input>.explain.png")
	fs.StringVar(&cfg.Token, "token", os.Getenv("MEDFED_TOKEN"), "bearer token issued by the operator (default $MEDFED_TOKEN)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "client certificate from the consortium CA (mutual TLS)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "key of --tls-cert")
	fs.StringVar(&cfg.TLSCA, "tls-ca", "", "consortium CA certificate, to verify the coordinator")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "plain HTTP without TLS (tests and local setups only)")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "samples per request")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "timeout of each request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	c, err := newPredictClient(cfg)
	if err != nil {
		return err
	}
	defer c.http.CloseIdleConnections()
	meta, err := c.metadata(ctx)
	if err != nil {
		return err
	}
	samples, err := readPredictInputs(cfg.Input, meta)
	if err != nil {
		return err
	}
	if len(samples) == 0 {
		return fmt.Errorf("no inputs found in %s (want .idx/-ubyte, .csv, .png, .jpg files)", cfg.Input)
	}
	if err := standardizeInputs(cfg.StandardizeFrom, samples, meta, stderr); err != nil {
		return err
	}
	res := predictResult{Model: cfg.Model}
	for lo := 0; lo < len(samples); lo += cfg.Batch {
		chunk := samples[lo:min(len(samples), lo+cfg.Batch)]
		version, classes, probs, err := c.infer(ctx, chunk, meta)
		if err != nil {
			return err
		}
		res.Version = version
		for i, s := range chunk {
			p := prediction{Input: s.label, Class: classes[i], Probability: probs[i*meta.classes+classes[i]]}
			if classes[i] < len(meta.classNames) {
				p.ClassName = meta.classNames[classes[i]]
			}
			res.Predictions = append(res.Predictions, p)
		}
	}
	if cfg.Explain {
		for i, s := range samples {
			if !s.image {
				return fmt.Errorf("--explain writes heat maps of image inputs (PNG, JPEG); %s is not one", s.label)
			}
			attr, err := c.explain(ctx, s, meta)
			if err != nil {
				return err
			}
			out := s.path + ".explain.png"
			if err := writeHeatMap(out, s.x, attr, meta.height(), meta.width()); err != nil {
				return err
			}
			res.Predictions[i].Explanation = out
		}
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, p := range res.Predictions {
		name := ""
		if p.ClassName != "" && p.ClassName != strconv.Itoa(p.Class) {
			name = " (" + p.ClassName + ")"
		}
		fmt.Fprintf(stdout, "%s\tclass %d%s\tprobability %.4f", p.Input, p.Class, name, p.Probability)
		if p.Explanation != "" {
			fmt.Fprintf(stdout, "\texplanation %s", p.Explanation)
		}
		fmt.Fprintln(stdout)
	}
	if !cfg.JSON {
		fmt.Fprintf(stdout, "%d inputs, model %s version %s\n", len(res.Predictions), res.Model, res.Version)
	}
	return nil
}

func (c predictConfig) validate() error {
	switch {
	case c.Coordinator == "":
		return errors.New("--coordinator is required (host:port of a coordinator's inference endpoint)")
	case c.Model == "":
		return errors.New("--model is required (the federation name)")
	case c.Input == "":
		return errors.New("--input is required (an IDX, CSV, PNG or JPEG file, or a folder)")
	case c.Batch < 1:
		return fmt.Errorf("--batch %d, want >= 1", c.Batch)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.TLSCert != "" && c.TLSCA == "":
		return errors.New("--tls-cert needs --tls-ca, the consortium CA that verifies the coordinator")
	case c.Insecure && (c.TLSCert != "" || c.TLSCA != ""):
		return errors.New("--insecure (plain HTTP) contradicts the --tls-* flags")
	case c.TLSCert == "" && c.Token == "":
		return errors.New("no credentials: give --token (or $MEDFED_TOKEN), or --tls-cert/--tls-key/--tls-ca")
	}
	return nil
}

type prediction struct {
	Input       string  `json:"input"`
	Class       int     `json:"class"`
	ClassName   string  `json:"class_name,omitempty"`
	Probability float32 `json:"probability"`
	Explanation string  `json:"explanation,omitempty"`
}

type predictResult struct {
	Model       string       `json:"model"`
	Version     string       `json:"version"`
	Predictions []prediction `json:"predictions"`
}

// predictClient speaks the Open Inference Protocol's REST flavour.
type predictClient struct {
	base, token, model, version string
	http                        *http.Client
	timeout                     time.Duration
}

func newPredictClient(cfg predictConfig) (*predictClient, error) {
	base := cfg.Coordinator
	if !strings.Contains(base, "://") {
		scheme := "https://"
		if cfg.Insecure {
			scheme = "http://"
		}
		base = scheme + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--coordinator %q, want host:port or an http(s):// URL", cfg.Coordinator)
	}
	if u.Scheme == "http" && !cfg.Insecure {
		return nil, fmt.Errorf("--coordinator %s is plain HTTP: add --insecure to send data without TLS", cfg.Coordinator)
	}
	tr := &http.Transport{}
	switch {
	case cfg.TLSCert != "":
		tc, err := pki.ClientTLSConfig(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA, "")
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	case cfg.TLSCA != "":
		pem, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", cfg.TLSCA)
		}
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	}
	return &predictClient{base: strings.TrimRight(u.String(), "/"), token: cfg.Token, model: cfg.Model, version: cfg.Version, http: &http.Client{Transport: tr}, timeout: cfg.Timeout}, nil
}

func (c *predictClient) path(action string) string {
	p := c.base + "/v2/models/" + url.PathEscape(c.model)
	if c.version != "" {
		p += "/versions/" + url.PathEscape(c.version)
	}
	if action != "" {
		p += "/" + action
	}
	return p
}

// do sends a request and decodes a JSON answer into v, turning protocol errors into Go
// errors with the server's message.
func (c *predictClient) do(ctx context.Context, method, url string, body any, v any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: answer is not the protocol's JSON: %v", method, url, err)
	}
	return nil
}

// modelInfo is what the CLI needs from the model metadata.
type modelInfo struct {
	shape        []int // one sample
	classes      int
	featureNames []string
	classNames   []string
}

func (m modelInfo) size() int {
	p := 1
	for _, d := range m.shape {
		p *= d
	}
	return p
}

// height and width of an image model ([h w 1] or [h w]); 0 otherwise.
func (m modelInfo) height() int {
	if m.isImage() {
		return m.shape[0]
	}
	return 0
}

func (m modelInfo) width() int {
	if m.isImage() {
		return m.shape[1]
	}
	return 0
}

func (m modelInfo) isImage() bool {
	return len(m.shape) == 2 || (len(m.shape) == 3 && m.shape[2] == 1)
}

func (c *predictClient) metadata(ctx context.Context) (modelInfo, error) {
	var md struct {
		Inputs []struct {
			Shape []int `json:"shape"`
		} `json:"inputs"`
		Outputs []struct {
			Name  string `json:"name"`
			Shape []int  `json:"shape"`
		} `json:"outputs"`
		Parameters struct {
			FeatureNames []string `json:"feature_names"`
			ClassNames   []string `json:"class_names"`
		} `json:"parameters"`
	}
	if err := c.do(ctx, "GET", c.path(""), nil, &md); err != nil {
		return modelInfo{}, err
	}
	if len(md.Inputs) != 1 || len(md.Inputs[0].Shape) < 2 {
		return modelInfo{}, fmt.Errorf("model %s: metadata has %d inputs, want one with a batch dimension", c.model, len(md.Inputs))
	}
	info := modelInfo{shape: md.Inputs[0].Shape[1:], featureNames: md.Parameters.FeatureNames, classNames: md.Parameters.ClassNames}
	for _, o := range md.Outputs {
		if o.Name == "probabilities" && len(o.Shape) == 2 {
			info.classes = o.Shape[1]
		}
	}
	if info.classes < 1 {
		return modelInfo{}, fmt.Errorf("model %s: metadata lacks the probabilities output", c.model)
	}
	return info, nil
}

// sample is one input to predict.
type sample struct {
	label string // file, file#index or file:line
	path  string
	x     []float32
	image bool // a PNG or JPEG file
	table bool // a CSV row
}

type tensorOut struct {
	Name  string    `json:"name"`
	Shape []int     `json:"shape"`
	Data  []float64 `json:"data"`
}

func inferRequest(samples []sample, meta modelInfo, params map[string]any) map[string]any {
	x := make([]float32, 0, len(samples)*meta.size())
	for _, s := range samples {
		x = append(x, s.x...)
	}
	req := map[string]any{"inputs": []map[string]any{{
		"name": "input", "datatype": "FP32", "shape": []int{len(samples), meta.size()}, "data": x,
	}}}
	if params != nil {
		req["parameters"] = params
	}
	return req
}

func (c *predictClient) infer(ctx context.Context, samples []sample, meta modelInfo) (version string, classes []int, probs []float32, err error) {
	var resp struct {
		ModelVersion string      `json:"model_version"`
		Outputs      []tensorOut `json:"outputs"`
	}
	if err := c.do(ctx, "POST", c.path("infer"), inferRequest(samples, meta, nil), &resp); err != nil {
		return "", nil, nil, err
	}
	for _, o := range resp.Outputs {
		switch o.Name {
		case "predicted_class":
			for _, v := range o.Data {
				classes = append(classes, int(v))
			}
		case "probabilities":
			for _, v := range o.Data {
				probs = append(probs, float32(v))
			}
		}
	}
	if len(classes) != len(samples) || len(probs) != len(samples)*meta.classes {
		return "", nil, nil, fmt.Errorf("answer holds %d classes and %d probabilities for %d inputs", len(classes), len(probs), len(samples))
	}
	for _, cl := range classes {
		if cl < 0 || cl >= meta.classes {
			return "", nil, nil, fmt.Errorf("answer holds class %d, model has %d", cl, meta.classes)
		}
	}
	return resp.ModelVersion, classes, probs, nil
}

func (c *predictClient) explain(ctx context.Context, s sample, meta modelInfo) ([]float32, error) {
	var resp struct {
		Outputs []tensorOut `json:"outputs"`
	}
	if err := c.do(ctx, "POST", c.path("explain"), inferRequest([]sample{s}, meta, nil), &resp); err != nil {
		return nil, err
	}
	for _, o := range resp.Outputs {
		if o.Name == "attributions" && len(o.Data) == meta.size() {
			a := make([]float32, len(o.Data))
			for i, v := range o.Data {
				a[i] = float32(v)
			}
			return a, nil
		}
	}
	return nil, fmt.Errorf("explain answer for %s lacks attributions of %d values", s.label, meta.size())
}

// readPredictInputs reads a file or every input file of a folder (sorted by name).
func readPredictInputs(path string, meta modelInfo) ([]sample, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return readPredictFile(path, meta)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []sample
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".explain.png") || inputKind(name) == "" {
			continue
		}
		s, err := readPredictFile(filepath.Join(path, name), meta)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

func inputKind(name string) string {
	n := strings.ToLower(strings.TrimSuffix(name, ".gz"))
	switch {
	case strings.HasSuffix(n, ".png"), strings.HasSuffix(n, ".jpg"), strings.HasSuffix(n, ".jpeg"):
		return "image"
	case strings.HasSuffix(n, ".csv"):
		return "csv"
	case strings.HasSuffix(n, ".idx"), strings.HasSuffix(n, "-ubyte"), strings.Contains(n, "idx3"):
		return "idx"
	}
	return ""
}

func readPredictFile(path string, meta modelInfo) ([]sample, error) {
	switch inputKind(filepath.Base(path)) {
	case "image":
		return readImageInput(path, meta)
	case "csv":
		return readCSVInput(path, meta)
	case "idx":
		return readIDXInput(path, meta)
	}
	return nil, fmt.Errorf("%s: unknown input type, want .png, .jpg, .csv, or an IDX image file (.idx, -ubyte, optionally .gz)", path)
}

func readImageInput(path string, meta modelInfo) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	h, w := meta.height(), meta.width()
	if !meta.isImage() {
		return nil, fmt.Errorf("%s: model %v takes inputs of shape %v, not grayscale images", path, meta.shape, meta.shape)
	}
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		return nil, fmt.Errorf("%s: image is %dx%d, the model takes %dx%d grayscale images (input shape %v); resize it first", path, b.Dx(), b.Dy(), w, h, meta.shape)
	}
	x := make([]float32, h*w)
	for y := range h {
		for xx := range w {
			g := color.GrayModel.Convert(img.At(b.Min.X+xx, b.Min.Y+y)).(color.Gray)
			x[y*w+xx] = float32(g.Y) / 255 // the scaling MNIST training used
		}
	}
	return []sample{{label: path, path: path, x: x, image: true}}, nil
}

// readIDXInput reads an IDX file of unsigned-byte images (magic 0x00000803).
func readIDXInput(path string, meta modelInfo) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		r = gz
	}
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%s: IDX header: %v", path, err)
	}
	if magic := binary.BigEndian.Uint32(hdr[:4]); magic != 0x803 {
		return nil, fmt.Errorf("%s: IDX magic %#08x, want 0x00000803 (unsigned-byte images)", path, magic)
	}
	n := int(binary.BigEndian.Uint32(hdr[4:]))
	h, w := int(binary.BigEndian.Uint32(hdr[8:])), int(binary.BigEndian.Uint32(hdr[12:]))
	if h*w != meta.size() {
		return nil, fmt.Errorf("%s: images are %dx%d, the model takes %v (%d values)", path, w, h, meta.shape, meta.size())
	}
	var out []sample
	buf := make([]byte, h*w)
	for i := 0; i < n; i++ {
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("%s: image %d of %d: %v", path, i, n, err)
		}
		x := make([]float32, len(buf))
		for j, v := range buf {
			x[j] = float32(v) / 255
		}
		out = append(out, sample{label: fmt.Sprintf("%s#%d", path, i), path: path, x: x})
	}
	return out, nil
}

// standardizeInputs scales the CSV rows among samples by the per-feature mean and standard
// deviation of the table at ref (dataset.FitStandardizer), which is what a hospital's
// client node does to its own table before training. Without ref it warns, once, that
// table rows go to the model unscaled.
func standardizeInputs(ref string, samples []sample, meta modelInfo, stderr io.Writer) error {
	tables := 0
	for _, s := range samples {
		if s.table {
			tables++
		}
	}
	switch {
	case ref == "" && tables > 0:
		fmt.Fprintln(stderr, "warning: the rows of CSV inputs go to the model as they are, but hospitals train table models on features scaled by their own means and standard deviations; give --standardize-from with the hospital's training table to scale them the same way")
		return nil
	case ref == "":
		return nil
	case tables < len(samples):
		return errors.New("--standardize-from scales CSV inputs; the inputs include images")
	}
	rows, err := readCSVInput(ref, meta)
	if err != nil {
		return fmt.Errorf("--standardize-from: %w", err)
	}
	if len(rows) == 0 {
		return fmt.Errorf("--standardize-from %s: no rows to fit means and standard deviations on", ref)
	}
	width := meta.size()
	set := &dataset.Set{Shape: []int{width}, X: make([]float32, 0, len(rows)*width), Y: make([]float32, len(rows))}
	for _, r := range rows {
		set.X = append(set.X, r.x...)
	}
	z := dataset.FitStandardizer(set)
	for _, s := range samples {
		if err := z.Apply(&dataset.Set{Shape: []int{width}, X: s.x, Y: make([]float32, 1)}); err != nil {
			return err
		}
	}
	return nil
}

// readCSVInput reads a table with a header row. Columns are picked by the model's feature
// names when it has them; otherwise the table has exactly the model's features, or one more
// column (the label, last) that is ignored.
func readCSVInput(path string, meta modelInfo) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %v", path, err)
	}
	want := meta.size()
	cols := make([]int, 0, want)
	switch {
	case meta.featureNames != nil:
		for _, name := range meta.featureNames {
			i := slices.IndexFunc(header, func(h string) bool { return strings.TrimSpace(h) == name })
			if i < 0 {
				return nil, fmt.Errorf("%s: no column %q; the model's features are %s", path, name, strings.Join(meta.featureNames, ", "))
			}
			cols = append(cols, i)
		}
	case len(header) == want || len(header) == want+1:
		for i := range want {
			cols = append(cols, i)
		}
	default:
		return nil, fmt.Errorf("%s: %d columns, the model takes %d features (plus an optional label column, last)", path, len(header), want)
	}
	var out []sample
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		x := make([]float32, want)
		for j, c := range cols {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[c]), 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s:%d: column %q is %q, want a finite number", path, line, header[c], rec[c])
			}
			x[j] = float32(v)
		}
		out = append(out, sample{label: fmt.Sprintf("%s:%d", path, line), path: path, x: x, table: true})
	}
	return out, nil
}

// writeHeatMap renders attributions over the grayscale input: red where a pixel pushed
// towards the predicted class, blue where it pushed against, intensity by |attribution|
// relative to the largest; scaled up so the short side is at least 224 pixels.
func writeHeatMap(path string, x, attr []float32, h, w int) error {
	maxAbs := float32(0)
	for _, a := range attr {
		maxAbs = max(maxAbs, float32(math.Abs(float64(a))))
	}
	if maxAbs == 0 {
		maxAbs = 1
	}
	scale := max(1, 224/min(h, w))
	img := image.NewRGBA(image.Rect(0, 0, w*scale, h*scale))
	for y := range h * scale {
		for xx := range w * scale {
			i := (y/scale)*w + xx/scale
			g := x[i] * 0.35 * 255
			a := attr[i] / maxAbs
			r, gg, bb := g, g, g
			if a > 0 {
				r += a * (255 - r)
			} else {
				bb += -a * (255 - bb)
			}
			img.Set(xx, y, color.RGBA{R: uint8(r), G: uint8(gg), B: uint8(bb), A: 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
