package loop

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// tlsIdleBudget is the live heap one idle TLS connection (TLS 1.3, ECDSA
// certificate, MQTT 3.1.1 CONNECT, then idle) may hold in the broker: what a
// plain connection holds (idleConnBudget) plus crypto/tls's Conn (896 B),
// its two AES-GCM states (two 896-byte objects: round keys both ways and the
// GHASH table), the exporter and resumption secrets, and tls.go's tlsConn
// and map entry. Measured at 4,000 B; 7,606 B while crypto/tls kept its
// read buffers (tlsbuf.go).
const tlsIdleBudget = 4300

// TestTLSIdleFootprint connects idle TLS clients from another process (the
// test binary run as tlsClientsHelper), so that only the broker's heap is in
// this one, and checks the live heap per connection against tlsIdleBudget.
func TestTLSIdleFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of TLS connections")
	}
	const warm, n = 200, 2000
	opts := session.DefaultOptions()
	opts.Logger = log.New(io.Discard, "", 0)
	broker := session.NewBroker(opts)
	pki := newPKI(t, "footprint CA")
	srv := New(broker, Config{Listen: []Listener{{Addr: "127.0.0.1:0", TLS: pki.serverTLS(t, nil)}},
		Loops: 2, Logger: opts.Logger})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	ca := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(ca, pki.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addrs()[0].String()
	tlsClients(t, addr, ca, "warm", warm) // the loops' scratch, the trie's first allocations
	before := liveHeap()
	tlsClients(t, addr, ca, "idle", n)
	waitFor(t, func() bool { return broker.Stats.ClientsConnected.Load() == int64(warm+n) })
	perConn := float64(liveHeap()-before) / n
	t.Logf("live heap per idle TLS connection: %.0f B (budget %d; buffers released: %v)", perConn, tlsIdleBudget, tlsBufs.ok)
	if perConn > tlsIdleBudget {
		t.Fatalf("an idle TLS connection holds %.0f B of live heap, over the budget of %d B", perConn, tlsIdleBudget)
	}
}

// tlsClients runs n TLS clients in a child process until the test ends; it
// returns once all of them have their CONNACK.
func tlsClients(t *testing.T, addr, ca, prefix string, n int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTLSClientsHelper$")
	cmd.Env = append(os.Environ(), "MIDGE_TLS_CLIENTS="+addr+","+ca+","+prefix+","+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "ready" {
			return
		}
	}
	t.Fatalf("TLS clients: no ready line (%v)", sc.Err())
}

// TestTLSClientsHelper is tlsClients' child: it connects the clients,
// prints "ready", and holds them until its stdin closes. It does nothing
// when run as a test.
func TestTLSClientsHelper(t *testing.T) {
	spec := os.Getenv("MIDGE_TLS_CLIENTS")
	if spec == "" {
		return
	}
	parts := strings.Split(spec, ",")
	addr, ca, prefix := parts[0], parts[1], parts[2]
	n, _ := strconv.Atoi(parts[3])
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: v3Wait}, "tcp", addr, tc)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		r := v3Over(t, c)
		r.send(v3ConnectPacket(codec.Version311, fmt.Sprintf("%s-%05d", prefix, i), true, 60))
		r.expect(codec.CONNACK)
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	time.Sleep(10 * time.Millisecond)
}
