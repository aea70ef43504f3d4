package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/tools"
)

// logRouter is the writer behind the broker's loggers: it gives each line a
// mosquitto log type (from its "Error: "/"Warning: " prefix, or the logger
// it came through), drops the types log_type leaves out, and sends the rest
// to every log_dest: streams and files (with the timestamp), syslog (with
// the type's priority) and $SYS/broker/log/X topics.
type logRouter struct {
	types     config.LogType
	timestamp bool
	tsFormat  string
	streams   []io.Writer
	syslog    *syslogWriter
	topic     *logTopics

	mu  sync.Mutex // one line at a time, to every destination
	buf []byte
}

// typed is a writer for lines of one type (subscribe, unsubscribe).
type typed struct {
	r *logRouter
	t config.LogType
}

func (w typed) Write(p []byte) (int, error) { w.r.line(w.t, p); return len(p), nil }

func (r *logRouter) Write(p []byte) (int, error) {
	t := config.LogNotice
	switch {
	case bytes.HasPrefix(p, []byte("Error: ")):
		t = config.LogError
	case bytes.HasPrefix(p, []byte("Warning: ")):
		t = config.LogWarning
	case bytes.HasPrefix(p, []byte("Information: ")):
		t = config.LogInformation
	case bytes.HasPrefix(p, []byte("Debug: ")):
		t = config.LogDebug
	}
	r.line(t, p)
	return len(p), nil
}

// enabled reports whether lines of type t go anywhere.
func (r *logRouter) enabled(t config.LogType) bool {
	return r.types&t != 0 && (len(r.streams) > 0 || r.syslog != nil || r.topic != nil)
}

func (r *logRouter) line(t config.LogType, p []byte) {
	if !r.enabled(t) {
		return
	}
	p = bytes.TrimRight(p, "\n")
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	b := r.buf[:0]
	if r.timestamp {
		if r.tsFormat != "" {
			b = tools.AppendStrftime(b, r.tsFormat, now)
		} else {
			b = strconv.AppendInt(b, now.Unix(), 10)
		}
		b = append(b, ':', ' ')
	}
	b = append(b, p...)
	if len(b) >= maxLogLine { // as mosquitto's 1,000-byte buffer: see maxLogLine
		b = b[:maxLogLine-1]
	}
	b = append(b, '\n')
	r.buf = b
	for _, w := range r.streams {
		_, _ = w.Write(b)
	}
	if r.syslog != nil {
		r.syslog.write(t, p, now)
	}
	if r.topic != nil {
		r.topic.send(t, b[:len(b)-1])
	}
}

// syslogWriter sends lines to the local syslog socket as glibc's syslog(3)
// does (RFC 3164 over a Unix datagram socket), reconnecting when the daemon
// comes back; lines are lost while there is none, as with syslog(3).
type syslogWriter struct {
	path     string
	facility int // already shifted: LOG_DAEMON or LOG_LOCALn
	conn     net.Conn
}

// syslogPath is the local syslog socket (a variable for tests).
var syslogPath = "/dev/log"

func newSyslog(facility int) *syslogWriter {
	f := 3 << 3 // LOG_DAEMON
	if facility >= 0 {
		f = (16 + facility) << 3 // LOG_LOCAL0 + n
	}
	return &syslogWriter{path: syslogPath, facility: f}
}

// severity maps a mosquitto log type to a syslog priority, as mosquitto does.
func severity(t config.LogType) int {
	switch t {
	case config.LogError:
		return 3 // LOG_ERR
	case config.LogWarning:
		return 4 // LOG_WARNING
	case config.LogNotice:
		return 5 // LOG_NOTICE
	case config.LogDebug:
		return 7 // LOG_DEBUG
	}
	return 6 // LOG_INFO
}

func (s *syslogWriter) write(t config.LogType, p []byte, now time.Time) {
	msg := fmt.Appendf(nil, "<%d>%s midge[%d]: %s", s.facility|severity(t), now.Format(time.Stamp), os.Getpid(), p)
	for try := 0; try < 2; try++ {
		if s.conn == nil {
			c, err := net.Dial("unixgram", s.path)
			if err != nil {
				return
			}
			s.conn = c
		}
		if _, err := s.conn.Write(msg); err == nil {
			return
		}
		s.conn.Close()
		s.conn = nil
	}
}

func (s *syslogWriter) close() {
	if s.conn != nil {
		s.conn.Close()
	}
}

// logTopics publishes log lines to $SYS/broker/log/X, as mosquitto's
// `log_dest topic`. Lines are handed to a goroutine (a log line may be
// written while the broker holds a lock that publishing takes) and dropped
// when it falls behind.
type logTopics struct {
	ch      chan logMsg
	publish func(topic string, payload []byte)
}

type logMsg struct {
	topic   string
	payload []byte
}

func newLogTopics() *logTopics { return &logTopics{ch: make(chan logMsg, 1024)} }

// topicOf is mosquitto's $SYS/broker/log/X for each type.
func topicOf(t config.LogType) string {
	switch t {
	case config.LogError:
		return "$SYS/broker/log/E"
	case config.LogWarning:
		return "$SYS/broker/log/W"
	case config.LogNotice:
		return "$SYS/broker/log/N"
	case config.LogInformation:
		return "$SYS/broker/log/I"
	case config.LogDebug:
		return "$SYS/broker/log/D"
	case config.LogSubscribe:
		return "$SYS/broker/log/M/subscribe"
	case config.LogUnsubscribe:
		return "$SYS/broker/log/M/unsubscribe"
	case config.LogWebsockets:
		return "$SYS/broker/log/WS"
	}
	return "$SYS/broker/log/N"
}

func (l *logTopics) send(t config.LogType, line []byte) {
	select {
	case l.ch <- logMsg{topicOf(t), append([]byte(nil), line...)}:
	default:
	}
}

// run publishes queued lines until stop is closed.
func (l *logTopics) run(publish func(topic string, payload []byte), stop <-chan struct{}) {
	for {
		select {
		case m := <-l.ch:
			publish(m.topic, m.payload)
		case <-stop:
			return
		}
	}
}
