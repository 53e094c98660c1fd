package model

import (
	"fmt"
	"math"
)

// OptimizerConfig selects and tunes an optimizer. Zero fields take Keras's defaults.
type OptimizerConfig struct {
	Name         string  `json:"name"`          // "adam" (default) or "sgd"
	LearningRate float64 `json:"learning_rate"` // adam 0.001, sgd 0.01
	Momentum     float64 `json:"momentum"`      // sgd only
	Nesterov     bool    `json:"nesterov"`      // sgd only
	Beta1        float64 `json:"beta1"`         // adam: 0.9
	Beta2        float64 `json:"beta2"`         // adam: 0.999
	Epsilon      float64 `json:"epsilon"`       // adam: 1e-7
}

func (c OptimizerConfig) withDefaults() (OptimizerConfig, error) {
	switch c.Name {
	case "", "adam":
		c.Name = "adam"
		c.LearningRate = or(c.LearningRate, 0.001)
		c.Beta1 = or(c.Beta1, 0.9)
		c.Beta2 = or(c.Beta2, 0.999)
		c.Epsilon = or(c.Epsilon, 1e-7)
	case "sgd":
		c.LearningRate = or(c.LearningRate, 0.01)
	default:
		return c, fmt.Errorf("unknown optimizer %q, want adam or sgd", c.Name)
	}
	if !(c.LearningRate > 0 && c.LearningRate < 1e3) {
		return c, fmt.Errorf("learning rate %v, want a positive value below 1000", c.LearningRate)
	}
	if !(c.Momentum >= 0 && c.Momentum < 1) || !(c.Beta1 >= 0 && c.Beta1 < 1) || !(c.Beta2 >= 0 && c.Beta2 < 1) {
		return c, fmt.Errorf("momentum %v, beta1 %v, beta2 %v: each must be in [0, 1)", c.Momentum, c.Beta1, c.Beta2)
	}
	return c, nil
}

func or(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

// optimizer updates parameters in place from their gradients.
type optimizer interface {
	step(params []*Param, grads [][]float32)
}

func newOptimizer(c OptimizerConfig, params []*Param) optimizer {
	slots := func() [][]float32 {
		s := make([][]float32, len(params))
		for i, p := range params {
			s[i] = make([]float32, len(p.Data))
		}
		return s
	}
	if c.Name == "sgd" {
		o := &sgd{c: c}
		if c.Momentum > 0 {
			o.velocity = slots()
		}
		return o
	}
	return &adam{c: c, m: slots(), v: slots()}
}

// sgd is Keras's SGD: v = momentum·v - lr·g; w += v (or w += momentum·v - lr·g with Nesterov).
type sgd struct {
	c        OptimizerConfig
	velocity [][]float32
}

func (o *sgd) step(params []*Param, grads [][]float32) {
	lr, mom := float32(o.c.LearningRate), float32(o.c.Momentum)
	for i, p := range params {
		g := grads[i]
		if o.velocity == nil {
			for j := range p.Data {
				p.Data[j] -= lr * g[j]
			}
			continue
		}
		v := o.velocity[i]
		for j := range p.Data {
			v[j] = mom*v[j] - lr*g[j]
			if o.c.Nesterov {
				p.Data[j] += mom*v[j] - lr*g[j]
			} else {
				p.Data[j] += v[j]
			}
		}
	}
}

// adam is Keras's Adam: bias-corrected step size lr·sqrt(1-β2^t)/(1-β1^t) and epsilon added
// to sqrt(v).
type adam struct {
	c    OptimizerConfig
	t    int
	m, v [][]float32
}

func (o *adam) step(params []*Param, grads [][]float32) {
	o.t++
	b1, b2 := float32(o.c.Beta1), float32(o.c.Beta2)
	alpha := float32(o.c.LearningRate * math.Sqrt(1-math.Pow(o.c.Beta2, float64(o.t))) / (1 - math.Pow(o.c.Beta1, float64(o.t))))
	eps := float32(o.c.Epsilon)
	for i, p := range params {
		g, m, v, w := grads[i], o.m[i], o.v[i], p.Data
		parallelFor(len(w)/chunk+1, chunk, func(lo, hi int) {
			lo, hi = lo*chunk, min(hi*chunk, len(w))
			adamUpdate(w[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], b1, b2, alpha, eps)
		})
	}
}

func sqrt32(v float32) float32 { return float32(math.Sqrt(float64(v))) }
