package embedded

import (
	"log/slog"
	"strings"
	"testing"
)

func TestLogsRoutedToSlog(t *testing.T) {
	tests := []struct {
		name      string
		debug     bool
		wantDebug bool
	}{
		{"notices only", false, false},
		{"debug", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, logs := newLogBuffer(slog.LevelDebug)
			s := startServer(t, Config{Logger: logger, Debug: tt.debug})
			connectInProcess(t, s).Close()
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			var ready, debug bool
			for _, r := range logs.records(t) {
				if r[keyComponent] != componentServer {
					continue
				}
				msg, _ := r["msg"].(string)
				if strings.Contains(msg, "Server is ready") && r["level"] == "INFO" {
					ready = true
				}
				if r["level"] == "DEBUG" {
					debug = true
				}
			}
			if !ready {
				t.Error(`no INFO "Server is ready" record with component=nats-server`)
			}
			if debug != tt.wantDebug {
				t.Errorf("nats-server debug records: %v, want %v", debug, tt.wantDebug)
			}
		})
	}
}

func TestFatalDoesNotExit(t *testing.T) {
	logger, logs := newLogBuffer(slog.LevelInfo)
	var got string
	l := &serverLogger{log: logger, fatal: func(format string, v []any) { got = format }}
	l.Fatalf("boom %d", 1)
	if got != "boom %d" {
		t.Errorf("fatal hook got %q", got)
	}
	recs := logs.records(t)
	if len(recs) != 1 || recs[0]["level"] != "ERROR" || recs[0]["msg"] != "boom 1" || recs[0][keyFatal] != true {
		t.Errorf("records %v, want one ERROR \"boom 1\" with fatal=true", recs)
	}
}
