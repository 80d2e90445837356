package embedded

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
)

// Log attribute keys and values used by this package.
const (
	keyComponent = "component"
	keyFatal     = "fatal"
	keyTrace     = "trace"
	keyReason    = "reason"
	keyRemote    = "remote"
	keyUser      = "user"
	keyName      = "name"

	componentServer   = "nats-server"
	componentEmbedded = "embedded"
)

// serverLogger routes nats-server's logs into a slog.Logger. nats-server only
// emits debug and trace lines when its debug and trace flags are set (see
// server.SetLogger), so both map to slog.LevelDebug; trace lines carry
// trace=true.
type serverLogger struct {
	log *slog.Logger
	// fatal, when set, is told about every Fatalf. nats-server calls Fatalf
	// and then returns from what it was doing (it expects the default logger
	// to exit the process, which this one never does).
	fatal func(format string, v []any)
}

var _ server.Logger = (*serverLogger)(nil)

func (l *serverLogger) logf(level slog.Level, format string, v []any, attrs ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, v...), attrs...)
}

// Noticef logs at slog.LevelInfo.
func (l *serverLogger) Noticef(format string, v ...any) { l.logf(slog.LevelInfo, format, v) }

// Warnf logs at slog.LevelWarn.
func (l *serverLogger) Warnf(format string, v ...any) { l.logf(slog.LevelWarn, format, v) }

// Errorf logs at slog.LevelError.
func (l *serverLogger) Errorf(format string, v ...any) { l.logf(slog.LevelError, format, v) }

// Fatalf logs at slog.LevelError with fatal=true; it never exits the process.
func (l *serverLogger) Fatalf(format string, v ...any) {
	l.logf(slog.LevelError, format, v, keyFatal, true)
	if l.fatal != nil {
		l.fatal(format, v)
	}
}

// Debugf logs at slog.LevelDebug.
func (l *serverLogger) Debugf(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }

// Tracef logs at slog.LevelDebug with trace=true.
func (l *serverLogger) Tracef(format string, v ...any) {
	l.logf(slog.LevelDebug, format, v, keyTrace, true)
}
