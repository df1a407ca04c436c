package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// levelTrace is where gobgp's own Debug output goes: it logs every message
// and timer, far too chatty for slog's Debug.
const levelTrace = slog.LevelDebug - 4

// slogAdapter feeds gobgp's logger interface into slog. It is quiet by
// design: gobgp's Info lines (peer up/down, config changes) go to Debug —
// the Speaker logs peer state changes itself at Info — and gobgp's Debug to
// levelTrace. Warn and Error stay as they are. Fatal does not exit the
// process (a library must not); Panic still panics, as gobgp expects.
type slogAdapter struct{ l *slog.Logger }

var _ gobgplog.Logger = slogAdapter{}

func (a slogAdapter) log(level slog.Level, msg string, fields gobgplog.Fields) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k, fields[k])
	}
	a.l.Log(ctx, level, "gobgp: "+msg, args...)
}

func (a slogAdapter) Panic(msg string, f gobgplog.Fields) {
	a.log(slog.LevelError, msg, f)
	panic(fmt.Sprintf("gobgp: %s %v", msg, f))
}
func (a slogAdapter) Fatal(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Error(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.log(slog.LevelWarn, msg, f) }
func (a slogAdapter) Info(msg string, f gobgplog.Fields)  { a.log(slog.LevelDebug, msg, f) }
func (a slogAdapter) Debug(msg string, f gobgplog.Fields) { a.log(levelTrace, msg, f) }

// SetLevel is a no-op: the slog handler decides.
func (a slogAdapter) SetLevel(gobgplog.LogLevel) {}

// GetLevel reports what the handler lets through, so gobgp can skip
// building expensive debug fields.
func (a slogAdapter) GetLevel() gobgplog.LogLevel {
	ctx := context.Background()
	switch {
	case a.l.Enabled(ctx, levelTrace):
		return gobgplog.DebugLevel
	case a.l.Enabled(ctx, slog.LevelDebug):
		return gobgplog.InfoLevel
	case a.l.Enabled(ctx, slog.LevelWarn):
		return gobgplog.WarnLevel
	default:
		return gobgplog.ErrorLevel
	}
}
