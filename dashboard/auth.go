package dashboard

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
)

// Checker verifies a user's password (auth.Passwords).
type Checker interface {
	Check(username, password []byte) bool
}

// Protect wraps h so that every request must carry user's credentials
// (HTTP basic authentication, checked by pw). Only GET and HEAD pass:
// the listener is read-only.
func Protect(h http.Handler, user string, pw Checker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		if pw != nil {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || !pw.Check([]byte(u), []byte(p)) {
				w.Header().Set("WWW-Authenticate", `Basic realm="midge", charset="UTF-8"`)
				http.Error(w, "credentials required", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// Loopback reports whether addr (host:port) listens on loopback only. An
// empty host or a name other than localhost listens on more.
func Loopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("dashboard: %w", err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback(), nil
}
