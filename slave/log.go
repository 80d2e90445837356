package slave

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Log attribute keys.
const (
	logKeyComponent = "component"
	logKeySlave     = "slave"
	logKeySession   = "session"
	logKeyGateway   = "gateway"
	logKeyErr       = "err"
	logKeyReason    = "reason"
	logKeyScope     = "scope"
	logKeyCause     = "cause"
)

// pionLoggerFactory sends pion's logs to slog: pion errors at Info (many are
// about a remote peer misbehaving or going away, not about this process),
// everything else at Debug. Nothing is formatted unless the level is enabled.
type pionLoggerFactory struct{ log *slog.Logger }

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With(logKeyScope, scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) emit(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l pionLogger) emitf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

// pion's trace level is far too chatty even for Debug: dropped.
func (pionLogger) Trace(string)                {}
func (pionLogger) Tracef(string, ...any)       {}
func (l pionLogger) Debug(msg string)          { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Debugf(f string, a ...any) { l.emitf(slog.LevelDebug, f, a...) }
func (l pionLogger) Info(msg string)           { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Infof(f string, a ...any)  { l.emitf(slog.LevelDebug, f, a...) }
func (l pionLogger) Warn(msg string)           { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Warnf(f string, a ...any)  { l.emitf(slog.LevelDebug, f, a...) }
func (l pionLogger) Error(msg string)          { l.emit(slog.LevelInfo, msg) }
func (l pionLogger) Errorf(f string, a ...any) { l.emitf(slog.LevelInfo, f, a...) }
