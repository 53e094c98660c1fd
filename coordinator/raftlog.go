package coordinator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/medfed/medfed/internal/logrepeat"
)

// raftLogRepeat is how long a warning or error of hashicorp/raft about one peer is not
// logged again once it has been: a peer that is down makes the leader report two failed
// heartbeats a second, and one line per raftLogRepeat says as much.
const raftLogRepeat = 30 * time.Second

// raftLogger is the hclog.Logger that hashicorp/raft (its core, transport and snapshot
// store) logs through. Each line becomes a record of the node's slog logger: raft's
// message as the message, its arguments as attributes (errors and values with a String
// method as text, as raft's own text log prints them), component=raft, and module=NAME
// for a named sub-logger. Errors and warnings stay errors and warnings; raft's
// informational lines (elections, state changes) are logged at debug level, and its
// debug and trace lines not at all unless SetLevel asks for them. A warning or error
// whose message and peer (its peer, target, server-id or from argument) were logged less
// than raftLogRepeat ago is counted instead, and the next one logged carries repeated=N,
// the number left out. It is safe for concurrent use.
type raftLogger struct {
	*raftLogShared
	name    string
	implied []any
}

// raftLogShared is what a raftLogger and the loggers derived from it share.
type raftLogShared struct {
	log   *slog.Logger
	limit *logrepeat.Limiter
	level atomic.Int32 // an hclog.Level
}

func newRaftLogger(log *slog.Logger) *raftLogger {
	s := &raftLogShared{log: log.With("component", "raft"), limit: logrepeat.New(raftLogRepeat)}
	s.level.Store(int32(hclog.Info))
	return &raftLogger{raftLogShared: s}
}

var _ hclog.Logger = (*raftLogger)(nil)

// raftPeerArgs are the arguments by which raft names the peer a line is about.
var raftPeerArgs = []string{"peer", "target", "server-id", "from"}

func (l *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < l.GetLevel() {
		return
	}
	slevel := slog.LevelDebug
	switch {
	case level >= hclog.Error:
		slevel = slog.LevelError
	case level == hclog.Warn:
		slevel = slog.LevelWarn
	}
	if !l.log.Enabled(context.Background(), slevel) {
		return
	}
	var attrs []slog.Attr
	if l.name != "" {
		attrs = append(attrs, slog.String("module", l.name))
	}
	peer := ""
	all := append(l.implied[:len(l.implied):len(l.implied)], args...)
	for i := 0; i < len(all); i += 2 {
		key := fmt.Sprint(all[i])
		if i+1 == len(all) {
			attrs = append(attrs, slog.String("EXTRA_VALUE_AT_END", key))
			break
		}
		a := raftAttr(key, all[i+1])
		attrs = append(attrs, a)
		if peer == "" && a.Value.Kind() == slog.KindString && slices.Contains(raftPeerArgs, key) {
			peer = a.Value.String()
		}
	}
	if slevel >= slog.LevelWarn {
		n, ok := l.limit.Allow(slevel.String() + "\x00" + msg + "\x00" + peer)
		if !ok {
			return
		}
		if n > 0 {
			attrs = append(attrs, slog.Int("repeated", n))
		}
	}
	l.log.LogAttrs(context.Background(), slevel, msg, attrs...)
}

// raftAttr is an argument of raft's as an attribute: basic values as they are, errors,
// hclog.Format and anything else as the text raft's text log would print.
func raftAttr(key string, v any) slog.Attr {
	switch v := v.(type) {
	case string, bool, int, int32, int64, uint, uint32, uint64, float64, time.Duration, time.Time:
		return slog.Any(key, v)
	case error:
		return slog.String(key, v.Error())
	case hclog.Format:
		if len(v) > 0 {
			if f, ok := v[0].(string); ok {
				return slog.String(key, fmt.Sprintf(f, v[1:]...))
			}
		}
	}
	return slog.String(key, fmt.Sprint(v))
}

func (l *raftLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *raftLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *raftLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *raftLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *raftLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *raftLogger) IsTrace() bool { return l.GetLevel() <= hclog.Trace }
func (l *raftLogger) IsDebug() bool { return l.GetLevel() <= hclog.Debug }
func (l *raftLogger) IsInfo() bool  { return l.GetLevel() <= hclog.Info }
func (l *raftLogger) IsWarn() bool  { return l.GetLevel() <= hclog.Warn }
func (l *raftLogger) IsError() bool { return l.GetLevel() <= hclog.Error }

func (l *raftLogger) ImpliedArgs() []any { return l.implied }

func (l *raftLogger) With(args ...any) hclog.Logger {
	c := *l
	c.implied = append(l.implied[:len(l.implied):len(l.implied)], args...)
	return &c
}

func (l *raftLogger) Name() string { return l.name }

func (l *raftLogger) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return l.ResetNamed(name)
}

func (l *raftLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

func (l *raftLogger) SetLevel(level hclog.Level) { l.level.Store(int32(level)) }
func (l *raftLogger) GetLevel() hclog.Level      { return hclog.Level(l.level.Load()) }

func (l *raftLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter logs each line written to it at opts.ForceLevel, or Info.
func (l *raftLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return raftLineWriter{l, level}
}

type raftLineWriter struct {
	l     *raftLogger
	level hclog.Level
}

func (w raftLineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			w.l.Log(w.level, line)
		}
	}
	return len(p), nil
}
