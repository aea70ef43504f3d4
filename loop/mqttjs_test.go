package loop

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mqttJSDir holds MQTT.js (npm package mqtt, pinned in package.json).
const mqttJSDir = "../test/mqttjs"

// needMQTTJS installs MQTT.js with npm when it is missing; a test that needs
// it fails, never skips, when that is not possible.
func needMQTTJS(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node not found: install Debian's nodejs and npm (make deps)")
	}
	if _, err := os.Stat(filepath.Join(mqttJSDir, "node_modules/mqtt/dist/mqtt.min.js")); err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = mqttJSDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("MQTT.js is missing and `npm ci` in test/mqttjs failed (make deps installs it): %v\n%s", err, out)
	}
}

// TestWebSocketMQTTJS drives midge with MQTT.js over ws:// (gnet) and wss://
// (net.Conn path), MQTT 3.1.1 and 5.0: QoS 0, 1, 2 and a retained message.
func TestWebSocketMQTTJS(t *testing.T) {
	needMQTTJS(t)
	for _, tr := range transports {
		if !tr.ws {
			continue
		}
		for _, v := range []string{"4", "5"} {
			tr := tr
			t.Run(tr.name+"/v"+v, func(t *testing.T) {
				tb := startTransport(t, &tr, nil, nil)
				scheme := "ws://"
				env := os.Environ()
				if tr.tls {
					scheme = "wss://"
					ca := filepath.Join(t.TempDir(), "ca.pem")
					if err := os.WriteFile(ca, tr.caPEM, 0o600); err != nil {
						t.Fatal(err)
					}
					env = append(env, "NODE_EXTRA_CA_CERTS="+ca)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, "node", "pubsub.js", scheme+tb.Addr+"/mqtt", v)
				cmd.Dir, cmd.Env = mqttJSDir, env
				out, err := cmd.Output()
				if err != nil {
					var stderr string
					if ee, ok := err.(*exec.ExitError); ok {
						stderr = string(ee.Stderr)
					}
					t.Fatalf("node pubsub.js: %v\n%s%s", err, out, stderr)
				}
				var got []struct {
					Topic, Payload string
					QoS            int
					Retain         bool
				}
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("output %q: %v", out, err)
				}
				want := []string{"js/q0 payload 0  qos0", "js/q1 payload 1…1010 qos1", "js/q2 payload 2…2010 qos2",
					"kept/" + v + " retained retain"}
				var have []string
				for _, m := range got {
					s := m.Topic + " " + m.Payload + " qos" + string(rune('0'+m.QoS))
					if m.Retain {
						s = m.Topic + " " + m.Payload + " retain"
					}
					have = append(have, s)
				}
				if strings.Join(have, "|") != strings.Join(want, "|") {
					t.Fatalf("MQTT.js received\n%q\nwant\n%q", have, want)
				}
			})
		}
	}
}

// TestWebSocketBrowser loads test/browser/page.html in headless Chromium:
// MQTT.js in the browser connects to midge over ws://127.0.0.1, subscribes,
// publishes at QoS 0, 1 and 2 and reports what it received.
func TestWebSocketBrowser(t *testing.T) {
	needMQTTJS(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: `make deps` installs Debian's chromium for this test")
	}
	tr := transports[2] // ws on gnet
	if tr.name != "ws" {
		t.Fatalf("transports[2] is %s", tr.name)
	}
	tb := startTransport(t, &tr, nil, nil)

	results := make(chan []byte, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/page.html", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "../test/browser/page.html")
	})
	mux.HandleFunc("/mqtt.min.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(mqttJSDir, "node_modules/mqtt/dist/mqtt.min.js"))
	})
	mux.HandleFunc("/result", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		select {
		case results <- b:
		default:
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	page := "http://" + ln.Addr().String() + "/page.html?broker=ws://" + tb.Addr + "/mqtt"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--no-first-run", "--user-data-dir="+t.TempDir(), page)
	var out lockedOutput
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers go with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	var res struct {
		Status    string
		Received  []string
		UserAgent string
	}
	select {
	case b := <-results:
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatalf("result %q: %v", b, err)
		}
	case <-ctx.Done():
		t.Fatalf("no result from the page in time; chromium output:\n%s", out.String())
	}
	want := []string{"browser/0 hello 0 qos0", "browser/1 hello 1 qos1", "browser/2 hello 2 qos2"}
	if res.Status != "ok" || strings.Join(res.Received, "|") != strings.Join(want, "|") {
		t.Fatalf("page: status %q, received %q, want %q", res.Status, res.Received, want)
	}
	if !strings.Contains(res.UserAgent, "Chrome") {
		t.Errorf("user agent %q: not Chromium?", res.UserAgent)
	}
	if !strings.Contains(tb.logs.String(), "as browser") {
		t.Errorf("no connection log for the browser:\n%s", tb.logs.String())
	}
}

// lockedOutput collects a process's output.
type lockedOutput struct{ syncBuffer }
