package inference

import (
	"context"
	"fmt"
)

// Explanation methods.
const (
	// MethodIntegratedGradients attributes the target class probability to the inputs by
	// integrated gradients (Sundararajan et al. 2017) from an all-zero baseline, with the
	// midpoint rule over Steps points: attribution_j = x_j * mean_k dF/dx_j((k+0.5)/Steps * x).
	// Attributions sum to about F(x) - F(0) (completeness).
	MethodIntegratedGradients = "integrated_gradients"
	// MethodGradientXInput is x_j * dF/dx_j(x): one backward pass, cheaper and noisier.
	MethodGradientXInput = "gradient_x_input"
)

// ExplainOptions chooses how Explain attributes. The zero value means integrated gradients
// with the registry's default steps, explaining each sample's predicted class.
type ExplainOptions struct {
	Method string
	Steps  int
	// Target is the class to explain per sample; nil means the predicted class.
	Target []int
}

// Explanation holds per-sample attributions of one target class each.
type Explanation struct {
	Method        string
	Steps         int
	Attributions  []float32 // n samples of the model's input size, like the input
	Probabilities []float32 // model outputs at x, n rows of classes
	Predicted     []int64   // argmax of Probabilities
	Target        []int     // the class explained per sample
	// TargetProbability and BaselineProbability are F(x) and F(baseline) for the target
	// class: integrated gradients sum to about their difference.
	TargetProbability   []float32
	BaselineProbability []float32
}

// Explain attributes the model's output for each of the n samples in x to its input values.
// It runs on the caller's goroutine (not the batcher) and checks ctx between samples.
func (s *ServedModel) Explain(ctx context.Context, x []float32, n int, opts ExplainOptions, defaultSteps int) (*Explanation, error) {
	if n < 1 || len(x) != n*s.inSize {
		return nil, fmt.Errorf("%w: %d values for %d samples of %d", ErrInvalidInput, len(x), n, s.inSize)
	}
	method := opts.Method
	if method == "" {
		method = MethodIntegratedGradients
	}
	steps := opts.Steps
	if steps == 0 {
		steps = defaultSteps
	}
	if method == MethodGradientXInput {
		steps = 1
	} else if method != MethodIntegratedGradients {
		return nil, fmt.Errorf("%w: explanation method %q, want %s or %s", ErrInvalidInput, method, MethodIntegratedGradients, MethodGradientXInput)
	}
	probs := s.m.Predict(x, n)
	e := &Explanation{Method: method, Steps: steps, Probabilities: probs, Predicted: argmax(probs, n, s.classes)}
	e.Target = make([]int, n)
	for i := range n {
		e.Target[i] = int(e.Predicted[i])
		if opts.Target != nil {
			if len(opts.Target) != n {
				return nil, fmt.Errorf("%w: %d target classes for %d samples", ErrInvalidInput, len(opts.Target), n)
			}
			if c := opts.Target[i]; c < 0 || c >= s.classes {
				return nil, fmt.Errorf("%w: target class %d of sample %d, want 0 to %d", ErrInvalidInput, c, i, s.classes-1)
			}
			e.Target[i] = opts.Target[i]
		}
	}
	base := s.m.Predict(make([]float32, n*s.inSize), n)
	e.TargetProbability = make([]float32, n)
	e.BaselineProbability = make([]float32, n)
	for i, c := range e.Target {
		e.TargetProbability[i] = probs[i*s.classes+c]
		e.BaselineProbability[i] = base[i*s.classes+c]
	}
	e.Attributions = make([]float32, n*s.inSize)
	path := make([]float32, steps*s.inSize)
	class := make([]int, steps)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		xi := x[i*s.inSize : (i+1)*s.inSize]
		for k := range steps {
			alpha := float32(1)
			if method == MethodIntegratedGradients {
				alpha = (float32(k) + 0.5) / float32(steps)
			}
			p := path[k*s.inSize : (k+1)*s.inSize]
			for j, v := range xi {
				p[j] = alpha * v
			}
			class[k] = e.Target[i]
		}
		g, err := s.m.InputGradients(path, steps, class)
		if err != nil {
			return nil, fmt.Errorf("inference: explain: %w", err)
		}
		a := e.Attributions[i*s.inSize : (i+1)*s.inSize]
		for k := range steps {
			gk := g[k*s.inSize : (k+1)*s.inSize]
			for j := range a {
				a[j] += gk[j]
			}
		}
		for j := range a {
			a[j] *= xi[j] / float32(steps)
		}
	}
	return e, nil
}
