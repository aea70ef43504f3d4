package loop

import (
	"bytes"
	"fmt"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/midge-mqtt/midge/session"
)

// errHTTPServed closes a connection that was answered as plain HTTP (an
// ordinary close: nothing to log).
var errHTTPServed = fmt.Errorf("loop: plain HTTP request answered: %w", session.ErrClosed)

// maxHTTPFile bounds a file served from http_dir: it is read whole, on the
// connection's goroutine, like mosquitto's own single thread does.
const maxHTTPFile = 16 << 20

// isUpgrade reports whether an HTTP request asks for a protocol upgrade
// (a WebSocket handshake) rather than a plain resource.
func isUpgrade(req []byte) bool {
	for _, line := range bytes.Split(req, []byte("\r\n"))[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Upgrade")) {
			return bytes.EqualFold(bytes.TrimSpace(v), []byte("websocket"))
		}
	}
	return false
}

// serveFile answers a plain GET or HEAD on a WebSocket listener with a file
// of http_dir (index.html for a directory), 404 when there is none, 405 for
// other methods. Paths are cleaned first, so nothing outside the directory
// is reachable. It queues the response and returns errHTTPServed: the
// connection is closed once the response is written.
func (w *wsStream) serveFile(req []byte) error {
	line, _, _ := bytes.Cut(req, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) != 3 || !bytes.HasPrefix(f[2], []byte("HTTP/")) {
		w.httpResponse(400, "Bad Request", "", nil, false)
		return errHTTPServed
	}
	method, target := string(f[0]), string(f[1])
	if method != "GET" && method != "HEAD" {
		w.httpResponse(405, "Method Not Allowed", "", nil, false)
		return errHTTPServed
	}
	if i := bytes.IndexAny([]byte(target), "?#"); i >= 0 {
		target = target[:i]
	}
	name := filepath.Join(w.httpDir, filepath.FromSlash(path.Clean("/"+target)))
	if fi, err := os.Stat(name); err == nil && fi.IsDir() {
		name = filepath.Join(name, "index.html")
	}
	fi, err := os.Stat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxHTTPFile {
		w.httpResponse(404, "Not Found", "", nil, false)
		return errHTTPServed
	}
	body, err := os.ReadFile(name)
	if err != nil {
		w.httpResponse(404, "Not Found", "", nil, false)
		return errHTTPServed
	}
	ctype := mime.TypeByExtension(filepath.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.httpResponse(200, "OK", ctype, body, method == "HEAD")
	return errHTTPServed
}

func (w *wsStream) httpResponse(code int, status, ctype string, body []byte, head bool) {
	w.ctl = fmt.Appendf(w.ctl, "HTTP/1.1 %d %s\r\n", code, status)
	if ctype != "" {
		w.ctl = fmt.Appendf(w.ctl, "Content-Type: %s\r\n", ctype)
	}
	w.ctl = append(w.ctl, "Content-Length: "...)
	w.ctl = strconv.AppendInt(w.ctl, int64(len(body)), 10)
	w.ctl = append(w.ctl, "\r\nConnection: close\r\n\r\n"...)
	if !head {
		w.ctl = append(w.ctl, body...)
	}
}
