package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// TestConfHTTPDir: a WebSocket listener with http_dir answers plain HTTP
// GETs with the directory's files (404 for what is not there, nothing above
// it reachable) and still upgrades WebSocket requests.
func TestConfHTTPDir(t *testing.T) {
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(www, "index.html"), "<p>midge</p>")
	writeFile(t, filepath.Join(dir, "secret"), "not served")
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nprotocol websockets\nallow_anonymous true\nuser root\nhttp_dir "+www+"\n")
	get := func(path string) (int, string, string) {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type"), string(b)
	}
	if code, ctype, body := get("/"); code != 200 || body != "<p>midge</p>" || !strings.HasPrefix(ctype, "text/html") {
		t.Fatalf("GET /: %d %q %q", code, ctype, body)
	}
	if code, _, body := get("/index.html?x=1"); code != 200 || body != "<p>midge</p>" {
		t.Fatalf("GET /index.html: %d %q", code, body)
	}
	for _, p := range []string{"/missing", "/../secret", "/%2e%2e/secret"} {
		if code, _, body := get(p); code != 404 {
			t.Fatalf("GET %s: %d %q", p, code, body)
		}
	}
	// The WebSocket upgrade still works: mosquitto_sub over it would need
	// libwebsockets options; midge's own handshake test lives in loop/, so
	// here a raw upgrade request is enough.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(status, "101") {
		t.Fatalf("upgrade: %q %v", status, err)
	}
}

// TestConfWebsocketsHeadersSize: an opening handshake larger than
// websockets_headers_size is refused; a smaller one is upgraded.
func TestConfWebsocketsHeadersSize(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nprotocol websockets\nallow_anonymous true\nwebsockets_headers_size 512\n")
	try := func(cookie int) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n"+
			"Cookie: "+strings.Repeat("c", cookie)+"\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		status, _ := bufio.NewReader(c).ReadString('\n')
		return status
	}
	if s := try(100); !strings.Contains(s, "101") {
		t.Fatalf("small handshake: %q", s)
	}
	if s := try(1000); s != "" {
		t.Fatalf("handshake over websockets_headers_size: %q, want the connection closed", s)
	}
}

// TestConfSocketDomainBindInterface: bind_interface lo with socket_domain
// ipv6 listens on lo's IPv6 address only; socket_domain ipv4 with an IPv6
// address stops the broker.
func TestConfSocketDomainBindInterface(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(t.TempDir(), "midge.conf")
	writeFile(t, conf, "listener "+itoa(port)+"\nallow_anonymous true\nsocket_domain ipv6\nbind_interface lo\n")
	addr6 := "[::1]:" + itoa(port)
	_, out := startMidge(t, addr6, "-c", conf)
	m := dialMQ(t, addr6, codec.Version311)
	m.connectOK("v6")
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+itoa(port), time.Second); err == nil {
		c.Close()
		t.Fatalf("IPv4 accepted on an ipv6 listener:\n%s", out.String())
	}

	writeFile(t, conf, "listener "+itoa(freePort(t))+" ::1\nsocket_domain ipv4\n")
	b, err := exec.Command(midgeBin, "-c", conf).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "Error") {
		t.Fatalf("an IPv6 address on an ipv4 listener: %v\n%s", err, b)
	}
}
