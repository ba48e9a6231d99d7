package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// hclogAdapter hands hashicorp raft's log lines to zerolog. Raft is chatty
// at info level (every election, every snapshot), so trace, debug and info
// all become zerolog debug; warnings and errors keep their level.
type hclogAdapter struct {
	zl   zerolog.Logger
	name string
	args []interface{}
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHclog(zl zerolog.Logger) *hclogAdapter {
	return &hclogAdapter{zl: zl}
}

func (h *hclogAdapter) event(level hclog.Level) *zerolog.Event {
	switch level {
	case hclog.Warn:
		return h.zl.Warn()
	case hclog.Error:
		return h.zl.Error()
	default:
		return h.zl.Debug()
	}
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	ev := h.event(level)
	if ev == nil {
		return
	}
	if h.name != "" {
		ev = ev.Str("logger", h.name)
	}
	ev = addArgs(ev, h.args)
	ev = addArgs(ev, args)
	ev.Msg(msg)
}

// addArgs adds hclog's alternating key, value arguments as fields.
func addArgs(ev *zerolog.Event, args []interface{}) *zerolog.Event {
	for i := 0; i < len(args); i += 2 {
		key := fmt.Sprint(args[i])
		if i+1 == len(args) {
			ev = ev.Str("extra", key)
			break
		}
		switch v := args[i+1].(type) {
		case error:
			ev = ev.AnErr(key, v)
		case string:
			ev = ev.Str(key, v)
		case fmt.Stringer:
			ev = ev.Stringer(key, v)
		default:
			ev = ev.Interface(key, v)
		}
	}
	return ev
}

func (h *hclogAdapter) Trace(msg string, args ...interface{}) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...interface{}) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...interface{})  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...interface{})  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...interface{}) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(l zerolog.Level) bool {
	return h.zl.GetLevel() <= l && zerolog.GlobalLevel() <= l
}

func (h *hclogAdapter) IsTrace() bool { return h.enabled(zerolog.DebugLevel) }
func (h *hclogAdapter) IsDebug() bool { return h.enabled(zerolog.DebugLevel) }
func (h *hclogAdapter) IsInfo() bool  { return h.enabled(zerolog.DebugLevel) }
func (h *hclogAdapter) IsWarn() bool  { return h.enabled(zerolog.WarnLevel) }
func (h *hclogAdapter) IsError() bool { return h.enabled(zerolog.ErrorLevel) }

func (h *hclogAdapter) ImpliedArgs() []interface{} { return h.args }

func (h *hclogAdapter) With(args ...interface{}) hclog.Logger {
	c := *h
	c.args = append(append([]interface{}(nil), h.args...), args...)
	return &c
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel is ignored: the zerolog logger's level decides.
func (h *hclogAdapter) SetLevel(hclog.Level) {}

func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsWarn():
		return hclog.Warn
	case h.IsError():
		return hclog.Error
	}
	return hclog.Off
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return stdWriter{h}
}

// stdWriter takes lines in the standard library's log format, as
// "[WARN] raft: ...", and logs them at the level their prefix names.
type stdWriter struct{ h *hclogAdapter }

func (w stdWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := hclog.Debug
	switch {
	case bytes.HasPrefix(line, []byte("[ERR")):
		level = hclog.Error
	case bytes.HasPrefix(line, []byte("[WARN")):
		level = hclog.Warn
	}
	if i := bytes.IndexByte(line, ']'); i >= 0 && line[0] == '[' {
		line = bytes.TrimSpace(line[i+1:])
	}
	w.h.Log(level, string(line))
	return len(p), nil
}
