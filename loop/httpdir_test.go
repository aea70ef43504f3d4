package loop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/midge-mqtt/midge/session"
)

// nopSink takes MQTT bytes and ignores them.
type nopSink struct{}

func (nopSink) packets(b []byte, _ *session.Output) (int, error) { return len(b), nil }

// FuzzWSOpening feeds arbitrary opening bytes to a WebSocket listener's
// stream with http_dir set: whatever arrives, it answers, upgrades or
// refuses without panicking, and never serves a file outside the directory.
func FuzzWSOpening(f *testing.F) {
	dir := f.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		f.Fatal(err)
	}
	os.WriteFile(filepath.Join(www, "index.html"), []byte("inside"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("OUTSIDE"), 0o644)
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /../secret HTTP/1.1\r\n\r\n"))
	f.Add([]byte("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		w := &wsStream{maxHandshake: wsMaxHandshake, httpDir: www}
		var out session.Output
		_, _ = w.read(append([]byte(nil), b...), nopSink{}, &out, 0)
		if strings.Contains(string(w.ctl), "OUTSIDE") {
			t.Fatalf("served a file outside http_dir for %q", b)
		}
	})
}
