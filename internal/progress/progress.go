// Package progress draws progress bars for long CLI tasks on a terminal, and nothing when the
// output is not one (a pipe, a file, CI logs).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// Bar is a single-line progress bar. It is not safe for concurrent use.
type Bar struct {
	w       io.Writer
	enabled bool
	label   string
	start   time.Time
	last    time.Time
}

// New returns a bar that draws on w only when w is a terminal.
func New(w io.Writer, label string) *Bar {
	f, ok := w.(*os.File)
	return &Bar{w: w, enabled: ok && term.IsTerminal(int(f.Fd())), label: label, start: time.Now()}
}

// Update redraws the bar at done of total, at most ten times a second (and always at the end).
func (b *Bar) Update(done, total int, extra string) {
	if !b.enabled || total <= 0 {
		return
	}
	now := time.Now()
	if done < total && now.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = now
	const width = 30
	filled := width * done / total
	elapsed := now.Sub(b.start).Seconds()
	eta := ""
	if done > 0 && done < total {
		eta = fmt.Sprintf(" eta %.0fs", elapsed*float64(total-done)/float64(done))
	}
	fmt.Fprintf(b.w, "\r%s [%s%s] %d/%d %.0fs%s %s\x1b[K", b.label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done, total, elapsed, eta, extra)
}

// Done ends the bar's line.
func (b *Bar) Done() {
	if b.enabled {
		fmt.Fprint(b.w, "\r\x1b[K")
	}
}
