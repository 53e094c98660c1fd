// Package logrepeat thins out log lines that repeat: a line whose key was written less
// than a period ago is counted instead of written, and the next one written says how
// many were left out. A node whose peer is down, or a client whose coordinator node is,
// then writes one line per period about it, not one per heartbeat or retry.
package logrepeat

import (
	"sync"
	"time"
)

// Limiter remembers when each key was last written. It is safe for concurrent use.
type Limiter struct {
	period time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time

	mu   sync.Mutex
	seen map[string]*seen
}

type seen struct {
	at      time.Time // when it was last written
	skipped int       // occurrences left out since
}

// maxKeys is how many keys a Limiter remembers before it forgets the ones quiet for a
// period: peers and nodes come and go.
const maxKeys = 1024

// New returns a Limiter that writes a key at most once per period.
func New(period time.Duration) *Limiter {
	return &Limiter{period: period, Now: time.Now, seen: map[string]*seen{}}
}

// Allow reports whether the line with this key is to be written now, and if so how many
// of its occurrences were left out since it last was.
func (l *Limiter) Allow(key string) (skipped int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	r := l.seen[key]
	if r != nil && now.Sub(r.at) < l.period {
		r.skipped++
		return 0, false
	}
	if r == nil {
		if len(l.seen) >= maxKeys {
			for k, old := range l.seen {
				if now.Sub(old.at) >= l.period {
					delete(l.seen, k)
				}
			}
		}
		r = &seen{}
		l.seen[key] = r
	}
	skipped = r.skipped
	r.at, r.skipped = now, 0
	return skipped, true
}
