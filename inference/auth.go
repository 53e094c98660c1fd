package inference

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/medfed/medfed/crypto/pki"
)

// TokenSet holds the bearer tokens the operator issued, as SHA-256 hashes only, each with
// the caller name it authenticates. It is immutable and safe for concurrent use.
type TokenSet struct {
	entries []tokenEntry
}

type tokenEntry struct {
	hash   [sha256.Size]byte
	caller string
}

// HashToken returns the form a token file stores: "sha256:" and the hex SHA-256 of token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}

// NewTokenSet builds a set from token -> caller name pairs; only the hashes are kept.
func NewTokenSet(tokens map[string]string) (*TokenSet, error) {
	ts := &TokenSet{}
	for tok, caller := range tokens {
		if len(tok) < 16 {
			return nil, fmt.Errorf("token for caller %q has %d characters, want at least 16", caller, len(tok))
		}
		if err := checkCallerName(caller); err != nil {
			return nil, err
		}
		ts.entries = append(ts.entries, tokenEntry{hash: sha256.Sum256([]byte(tok)), caller: caller})
	}
	return ts, nil
}

// ParseTokenFile reads a token file: one "<caller> sha256:<64 hex digits>" per line (see
// HashToken), blank lines and lines starting with # ignored. The file never holds a token
// itself, so reading it does not reveal one.
func ParseTokenFile(r io.Reader) (*TokenSet, error) {
	ts := &TokenSet{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 || !strings.HasPrefix(fields[1], "sha256:") {
			return nil, fmt.Errorf("token file line %d: got %d fields, want \"<caller> sha256:<hex>\"", line, len(fields))
		}
		if err := checkCallerName(fields[0]); err != nil {
			return nil, fmt.Errorf("token file line %d: %w", line, err)
		}
		raw, err := hex.DecodeString(strings.TrimPrefix(fields[1], "sha256:"))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("token file line %d: hash is not 64 hex digits", line)
		}
		e := tokenEntry{caller: fields[0]}
		copy(e.hash[:], raw)
		ts.entries = append(ts.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	return ts, nil
}

// LoadTokenFile reads a token file from disk (see ParseTokenFile).
func LoadTokenFile(path string) (*TokenSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ts, err := ParseTokenFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ts, nil
}

// lookup returns the caller a token authenticates. It compares the token's hash with every
// entry in constant time, so the time taken says nothing about which entry matched.
func (ts *TokenSet) lookup(token string) (string, bool) {
	if ts == nil {
		return "", false
	}
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range ts.entries {
		if subtle.ConstantTimeCompare(h[:], ts.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return ts.entries[found].caller, true
}

func checkCallerName(name string) error {
	if name == "" || len(name) > 128 || strings.ContainsAny(name, " \t\"\\\n") {
		return fmt.Errorf("caller name %q: want 1 to 128 characters without spaces, quotes or backslashes", name)
	}
	return nil
}

// authenticate returns the caller of a request: "<role>/<id>" from a client certificate the
// consortium CA signed, else "token/<name>" from a bearer token in the token set. A bearer
// token that is presented but not recognised is refused even if a certificate is present.
func authenticate(state *tls.ConnectionState, authorization string, tokens *TokenSet) (string, error) {
	certCaller := ""
	if state != nil && len(state.VerifiedChains) > 0 {
		role, id, err := pki.IdentityFromTLS(*state)
		if err != nil {
			return "", fmt.Errorf("%w: client certificate: %v", ErrUnauthenticated, err)
		}
		certCaller = string(role) + "/" + id
	}
	if authorization != "" {
		scheme, token, ok := strings.Cut(authorization, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return "", fmt.Errorf("%w: authorization header, want \"Bearer <token>\"", ErrUnauthenticated)
		}
		name, ok := tokens.lookup(strings.TrimSpace(token))
		if !ok {
			return "", fmt.Errorf("%w: bearer token not recognised", ErrUnauthenticated)
		}
		if certCaller != "" {
			return certCaller, nil
		}
		return "token/" + name, nil
	}
	if certCaller != "" {
		return certCaller, nil
	}
	return "", fmt.Errorf("%w: no client certificate from the consortium CA and no bearer token", ErrUnauthenticated)
}

// limiter is a per-caller token bucket. Safe for concurrent use. Callers are authenticated
// before they reach it, so its map is bounded by the roster and the token set.
type limiter struct {
	rate, burst float64
	off         bool
	now         func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(cfg Config) *limiter {
	return &limiter{rate: cfg.RateLimit, burst: float64(cfg.RateBurst), off: cfg.NoRateLimit, now: time.Now, buckets: map[string]*bucket{}}
}

// allow takes one token from caller's bucket, or says how long until one is available.
func (l *limiter) allow(caller string) (bool, time.Duration) {
	if l.off {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[caller]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[caller] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}
