package tools

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnixSocketTools: midge pub and sub --unix reach a broker on its Unix
// domain socket (Debian's mosquitto, `listener 0 PATH`), as mosquitto_pub
// and mosquitto_sub do.
func TestUnixSocketTools(t *testing.T) {
	// mosquitto, started as root, binds its Unix socket as user mosquitto:
	// the directory must let it.
	dir, err := os.MkdirTemp("", "midge-unix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "mqtt.sock")
	startBroker(t, "listener 0 "+sock, "allow_anonymous true")
	var subOut, subErr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Sub([]string{"--unix", sock, "-t", "u/#", "-v", "-C", "2", "-W", "10", "-q", "1", "-i", "unix-sub"}, nil, &subOut, &subErr)
	}()
	// Publish until the subscriber, once subscribed, has taken two messages.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		if r := runMidge(t, pub, "", "--unix", sock, "-t", "u/x", "-m", "m", "-q", "1"); r.code != 0 {
			t.Fatalf("midge pub --unix: %+v", r)
		}
		select {
		case code := <-done:
			if code != 0 || subOut.String() != "u/x m\nu/x m\n" {
				t.Fatalf("midge sub --unix: exit %d, %q, %q", code, subOut.String(), subErr.String())
			}
			if r := runReference(t, "pub", "", "--unix", sock, "-t", "u/y", "-m", "ok"); r.code != 0 {
				t.Fatalf("mosquitto_pub --unix: %+v", r)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("midge sub --unix got %q, %q", subOut.String(), subErr.String())
		}
	}
}

// TestRetainAsPublishedFlag: midge sub --retain-as-published keeps the
// RETAIN flag of a message forwarded live, as mosquitto_sub does [MQTT-3.3.1-12].
func TestRetainAsPublishedFlag(t *testing.T) {
	port := portOf(startBroker(t))
	for _, rap := range []bool{false, true} {
		args := []string{"-p", port, "-V", "5", "-t", "rap", "-C", "1", "-W", "10", "-F", "%r %p", "-i", "rap-sub"}
		if rap {
			args = append(args, "--retain-as-published")
		}
		var out, errb bytes.Buffer
		done := make(chan int, 1)
		go func() { done <- Sub(args, nil, &out, &errb) }()
		time.Sleep(300 * time.Millisecond) // let the subscription land: a retained message now would be sent on subscribe
		if r := runReference(t, "pub", "", "-p", port, "-t", "rap", "-m", "live", "-r"); r.code != 0 {
			t.Fatalf("mosquitto_pub: %+v", r)
		}
		want := map[bool]string{false: "0 live\n", true: "1 live\n"}[rap]
		if code := <-done; code != 0 || out.String() != want {
			t.Fatalf("--retain-as-published %v: exit %d, %q (%q), want %q", rap, code, out.String(), errb.String(), want)
		}
		runReference(t, "pub", "", "-p", port, "-t", "rap", "-n", "-r") // clear it
	}
}

// TestRandomFilterFlag: --random-filter 0.1 prints about one message in a
// thousand; 100 prints all.
func TestRandomFilterFlag(t *testing.T) {
	port := portOf(startBroker(t))
	count := func(pct string) int {
		var out, errb bytes.Buffer
		done := make(chan int, 1)
		go func() {
			done <- Sub([]string{"-p", port, "-t", "rf", "-W", "2", "--random-filter", pct, "-i", "rf-" + pct}, nil, &out, &errb)
		}()
		time.Sleep(300 * time.Millisecond)
		lines := strings.Repeat("x\n", 200)
		// midge pub, not mosquitto_pub: mosquitto_pub -l can hang at the end
		// of its input (eclipse-mosquitto/mosquitto#1448; it did in CI).
		if r := runMidge(t, pub, lines, "-p", port, "-t", "rf", "-l"); r.code != 0 {
			t.Fatalf("midge pub -l: %+v", r)
		}
		<-done // -W 2: ends after 2 s without a message
		return strings.Count(out.String(), "\n")
	}
	if n := count("100"); n != 200 {
		t.Fatalf("--random-filter 100 printed %d of 200", n)
	}
	if n := count("0.1"); n > 10 {
		t.Fatalf("--random-filter 0.1 printed %d of 200", n)
	}
}

// TestCapathFlag: --capath loads every certificate of an OpenSSL hashed
// directory (hash-named links or copies).
func TestCapathFlag(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Skipf("no system CA bundle to take certificates from: %v", err)
	}
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "5ad8a5d6.0"), pem.EncodeToMemory(blk), 0o600)
	cfg, err := parseArgs(toolSub, []string{"-t", "a", "--capath", dir})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := x509.NewCertPool()
	want.AddCert(cert)
	if !cfg.useTLS || tc.RootCAs == nil || !tc.RootCAs.Equal(want) {
		t.Fatal("--capath did not load the directory's certificate")
	}
	empty := t.TempDir()
	cfg, _ = parseArgs(toolSub, []string{"-t", "a", "--capath", empty})
	if _, err := cfg.tlsConfig(); err == nil {
		t.Fatal("an empty --capath was accepted")
	}
}

// TestUnsupportedFlags: mosquitto's flags midge cannot honour are refused
// with mosquitto's wording of an unknown option and a note saying why.
func TestUnsupportedFlags(t *testing.T) {
	for _, c := range []struct{ flag, note string }{
		{"--psk", "TLS-PSK"}, {"--proxy", "SOCKS5"}, {"--tls-engine", "engines"},
	} {
		r := runMidge(t, sub, "", "-t", "a", c.flag, "x")
		lines := strings.Split(r.stderr, "\n")
		if r.code != 1 || lines[0] != "Error: Unknown option '"+c.flag+"'." || !strings.Contains(lines[1], c.note) {
			t.Fatalf("%s: code %d, stderr %q", c.flag, r.code, r.stderr)
		}
	}
}
