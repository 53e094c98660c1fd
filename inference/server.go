package inference

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// Server speaks the Open Inference Protocol v2 over REST (Handler) and gRPC (RegisterGRPC)
// for the models of a Registry, with authentication, per-caller counters and a per-caller
// rate limit. It is safe for concurrent use; it owns no goroutines (the Registry does).
type Server struct {
	reg    *Registry
	cfg    Config
	tokens *TokenSet
	lim    *limiter
	log    *slog.Logger
	m      *metrics

	// Buffers reused across REST requests: bodies and responses, and decoded samples.
	bufs   sync.Pool // *[]byte
	floats sync.Pool // *[]float32
}

// Pooled buffers over these sizes are left to the garbage collector, so one large request
// does not keep its memory alive.
const (
	maxPooledBytes  = 1 << 20
	maxPooledFloats = 1 << 18
)

func (s *Server) getBytes() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	return new([]byte)
}

func (s *Server) putBytes(b *[]byte) {
	if cap(*b) <= maxPooledBytes {
		s.bufs.Put(b)
	}
}

// getFloats returns an empty slice, with capacity if the pool has one.
func (s *Server) getFloats() []float32 {
	if x, ok := s.floats.Get().(*[]float32); ok {
		return (*x)[:0]
	}
	return nil
}

// putFloats hands x back for reuse; nothing may read or write x afterwards.
func (s *Server) putFloats(x []float32) {
	if cap(x) > 0 && cap(x) <= maxPooledFloats {
		s.floats.Put(&x)
	}
}

// NewServer serves reg. Callers authenticate with a client certificate from the consortium
// CA (when the listener uses mutual TLS) or with a bearer token from tokens (nil: none). A
// nil logger discards logs.
func NewServer(reg *Registry, tokens *TokenSet, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{reg: reg, cfg: reg.cfg, tokens: tokens, lim: newLimiter(reg.cfg), log: logger, m: reg.metrics}
}

// TokenTLSConfig returns a copy of a server TLS configuration (as pki.ServerTLSConfig makes)
// that also lets clients without a certificate connect, so they can authenticate with a
// bearer token instead. Certificates that are presented are still verified against the
// consortium CA and must carry a MedFed identity.
func TokenTLSConfig(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.ClientAuth = tls.VerifyClientCertIfGiven
	verify := cfg.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || verify == nil {
			return nil
		}
		return verify(cs)
	}
	return c
}

// admit authenticates and rate-limits one request, returning the caller.
func (s *Server) admit(state *tls.ConnectionState, authorization string) (string, time.Duration, error) {
	caller, err := authenticate(state, authorization, s.tokens)
	if err != nil {
		return "", 0, err
	}
	if ok, wait := s.lim.allow(caller); !ok {
		return caller, wait, fmt.Errorf("%w: caller %s may make %g requests per second (burst %d); retry in %v", ErrRateLimited, caller, s.cfg.RateLimit, s.cfg.RateBurst, wait.Round(time.Millisecond))
	}
	return caller, 0, nil
}

// infer runs a validated input through the batcher of model version sm.
func (s *Server) infer(ctx context.Context, sm *ServedModel, x []float32, n int) (probs []float32, classes []int64, err error) {
	probs, err = sm.Predict(ctx, x, n)
	if err != nil {
		return nil, nil, err
	}
	return probs, argmax(probs, n, sm.classes), nil
}

func serverVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// codeOf names the outcome of a request for the metrics.
func codeOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnauthenticated):
		return "unauthenticated"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrModelNotFound), errors.Is(err, ErrVersionNotFound):
		return "not_found"
	case errors.Is(err, ErrInvalidInput), errors.Is(err, ErrTooLarge):
		return "invalid"
	case errors.Is(err, ErrClosed):
		return "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}
