package inference

import (
	"fmt"
	"runtime"
	"time"
)

// Config tunes serving. Zero fields mean the default from DefaultConfig; Validate names the
// first bad field.
type Config struct {
	// MaxBatch is the largest number of samples the batcher runs through the model in one
	// Predict call. Requests from concurrent callers are merged up to this size; a single
	// request of MaxBatch samples or more runs on its own.
	MaxBatch int
	// MaxDelay is how long the batcher waits for more requests to fill a batch after the
	// first one arrived, as long as other callers of the same version are waiting for
	// results (a lone caller is never delayed). Then the batch runs as soon as a worker is
	// free, and keeps growing, up to MaxBatch, while all workers are busy.
	MaxDelay time.Duration
	// Workers is the number of batches a model version runs at the same time.
	Workers int
	// MaxRequestSamples is the largest batch dimension one request may carry.
	MaxRequestSamples int
	// MaxExplainSamples is the largest batch dimension of one explain request (each sample
	// costs IGSteps forward and backward passes).
	MaxExplainSamples int
	// MaxBodyBytes is the largest REST request body accepted.
	MaxBodyBytes int64
	// Retain is how many of the newest versions of each model stay loaded; pinned versions
	// stay loaded in addition.
	Retain int
	// IGSteps is the default number of steps of integrated gradients.
	IGSteps int
	// MaxIGSteps bounds the steps a caller may ask for.
	MaxIGSteps int
	// RateLimit is each caller's sustained request rate, per second, and RateBurst the
	// number of requests it may make at once before the rate applies.
	RateLimit float64
	RateBurst int
	// NoRateLimit turns the per-caller rate limit off (benchmarks, trusted deployments).
	NoRateLimit bool
}

// DefaultConfig returns the settings a coordinator serves with unless told otherwise.
func DefaultConfig() Config {
	return Config{
		MaxBatch:          64,
		MaxDelay:          500 * time.Microsecond,
		Workers:           runtime.GOMAXPROCS(0),
		MaxRequestSamples: 4096,
		MaxExplainSamples: 16,
		MaxBodyBytes:      64 << 20,
		Retain:            3,
		IGSteps:           32,
		MaxIGSteps:        256,
		RateLimit:         100,
		RateBurst:         200,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxBatch == 0 {
		c.MaxBatch = d.MaxBatch
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = d.MaxDelay
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.MaxRequestSamples == 0 {
		c.MaxRequestSamples = d.MaxRequestSamples
	}
	if c.MaxExplainSamples == 0 {
		c.MaxExplainSamples = d.MaxExplainSamples
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.Retain == 0 {
		c.Retain = d.Retain
	}
	if c.IGSteps == 0 {
		c.IGSteps = d.IGSteps
	}
	if c.MaxIGSteps == 0 {
		c.MaxIGSteps = d.MaxIGSteps
	}
	if c.RateLimit == 0 {
		c.RateLimit = d.RateLimit
	}
	if c.RateBurst == 0 {
		c.RateBurst = d.RateBurst
	}
	return c
}

// Validate reports the first bad field of c (after zero fields take their defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxBatch < 1:
		return fmt.Errorf("inference config: MaxBatch %d, want >= 1", c.MaxBatch)
	case c.MaxDelay < 0:
		return fmt.Errorf("inference config: MaxDelay %v, want >= 0", c.MaxDelay)
	case c.Workers < 1:
		return fmt.Errorf("inference config: Workers %d, want >= 1", c.Workers)
	case c.MaxRequestSamples < 1:
		return fmt.Errorf("inference config: MaxRequestSamples %d, want >= 1", c.MaxRequestSamples)
	case c.MaxExplainSamples < 1:
		return fmt.Errorf("inference config: MaxExplainSamples %d, want >= 1", c.MaxExplainSamples)
	case c.MaxBodyBytes < 1:
		return fmt.Errorf("inference config: MaxBodyBytes %d, want >= 1", c.MaxBodyBytes)
	case c.Retain < 1:
		return fmt.Errorf("inference config: Retain %d, want >= 1", c.Retain)
	case c.IGSteps < 1:
		return fmt.Errorf("inference config: IGSteps %d, want >= 1", c.IGSteps)
	case c.MaxIGSteps < c.IGSteps:
		return fmt.Errorf("inference config: MaxIGSteps %d, want >= IGSteps (%d)", c.MaxIGSteps, c.IGSteps)
	case c.RateLimit < 0:
		return fmt.Errorf("inference config: RateLimit %g, want > 0 (or NoRateLimit)", c.RateLimit)
	case c.RateBurst < 1:
		return fmt.Errorf("inference config: RateBurst %d, want >= 1", c.RateBurst)
	}
	return nil
}
