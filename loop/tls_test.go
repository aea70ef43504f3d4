package loop

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// Tests of TLS on the event loops (tls.go): record boundaries, the handshake
// goroutine's hand-over, post-handshake messages, close_notify, stalled
// handshakes, large payloads, and third-party clients over TLS and wss.

// startTLS starts a broker with one TLS listener (or wss) whose server
// configuration srv may adjust.
func startTLS(t *testing.T, ws bool, srv func(*tls.Config), cfg ...func(*Config)) (*testBroker, *transport) {
	t.Helper()
	pki := newPKI(t, "midge test CA")
	tr := &transport{name: "tls", tls: true, ws: ws}
	tr.server, tr.clientTC, tr.caPEM = pki.serverTLS(t, nil), pki.clientTLS(), pki.pem
	if srv != nil {
		srv(tr.server)
	}
	return startTransport(t, tr, nil, nil, cfg...), tr
}

// shaper is the client's socket with control over how its bytes leave: cut
// into pieces of at most split bytes sent apart, or held back until flush.
type shaper struct {
	net.Conn
	mu    sync.Mutex
	split int  // > 0: write at most this many bytes at a time, 2 ms apart
	hold  bool // keep writes in held until flush
	held  []byte
	drop  bool // discard writes (a peer that stalls)
}

func (s *shaper) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.drop:
		return len(p), nil
	case s.hold:
		s.held = append(s.held, p...)
		return len(p), nil
	case s.split > 0:
		for i := 0; i < len(p); i += s.split {
			if _, err := s.Conn.Write(p[i:min(len(p), i+s.split)]); err != nil {
				return i, err
			}
			time.Sleep(2 * time.Millisecond) // separate reads on the broker's side
		}
		return len(p), nil
	}
	return s.Conn.Write(p)
}

// flush sends what was held with one write and stops holding.
func (s *shaper) flush(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = false
	if _, err := s.Conn.Write(s.held); err != nil {
		t.Fatalf("flush: %v", err)
	}
	s.held = nil
}

// dialShaped opens a TLS connection through a shaper that shape sets up
// before the handshake; after is called once the handshake is done.
func dialShaped(t *testing.T, tb *testBroker, tc *tls.Config, sh *shaper) *tls.Conn {
	t.Helper()
	sh.Conn = tb.dial(t)
	c := tls.Client(sh, tc)
	_ = c.SetDeadline(time.Now().Add(v3Wait))
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// v3Over speaks MQTT 3.1.1 over c.
func v3Over(t *testing.T, c net.Conn) *v3Conn {
	return &v3Conn{t: t, c: c, dec: codec.Decoder{Version: codec.Version311}}
}

// TestTLSRecordBoundaries: the broker decrypts whatever way records arrive:
// cut into pieces of a few bytes (the handshake too), many records in one
// read, the client's Finished and its CONNECT in one segment (the CONNECT is
// handed from the handshake goroutine to the loop), and MQTT packets cut
// across records.
func TestTLSRecordBoundaries(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			tb, tr := startTLS(t, false, func(c *tls.Config) { c.MaxVersion = version })

			t.Run("split", func(t *testing.T) {
				sh := &shaper{split: 3}
				r := v3Over(t, dialShaped(t, tb, tr.clientTC, sh))
				r.send(v3ConnectPacket(codec.Version311, "split", true, 0))
				r.expect(codec.CONNACK)
				r.subscribe(1, "split/t", 1)
				r.publish("split/t", "cut into 3-byte pieces", 1, 2, false)
				r.expectPublish("split/t", "cut into 3-byte pieces", 1, false)
			})

			t.Run("many records in one read", func(t *testing.T) {
				sh := &shaper{}
				c := dialShaped(t, tb, tr.clientTC, sh)
				r := v3Over(t, c)
				sh.hold = true
				r.send(v3ConnectPacket(codec.Version311, "many", true, 0))
				r.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
					Subscriptions: []codec.Subscription{{Filter: []byte("many/t"), QoS: 0}}})
				const n = 200 // one record each
				for i := range n {
					r.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("many/t"), Payload: []byte(fmt.Sprint(i))})
				}
				sh.flush(t)
				r.expect(codec.CONNACK)
				r.expect(codec.SUBACK)
				for i := range n {
					r.expectPublish("many/t", fmt.Sprint(i), 0, false)
				}
			})

			// Only TLS 1.3 lets the client send data right after its own
			// Finished; a TLS 1.2 client waits for the server's.
			if version == tls.VersionTLS13 {
				t.Run("finished and CONNECT in one segment", func(t *testing.T) {
					sh := &shaper{hold: true}
					sh.Conn = tb.dial(t)
					c := tls.Client(&holdAfterFirst{shaper: sh}, tr.clientTC)
					_ = c.SetDeadline(time.Now().Add(v3Wait))
					if err := c.Handshake(); err != nil { // its Finished is held
						t.Fatalf("handshake: %v", err)
					}
					r := v3Over(t, c)
					r.send(v3ConnectPacket(codec.Version311, "early", true, 0))
					sh.flush(t)
					r.expect(codec.CONNACK)
					r.subscribe(1, "early/t", 0)
				})

			}

			t.Run("packets across records", func(t *testing.T) {
				sh := &shaper{}
				c := dialShaped(t, tb, tr.clientTC, sh)
				r := v3Over(t, c)
				r.send(v3ConnectPacket(codec.Version311, "across", true, 0))
				r.expect(codec.CONNACK)
				r.subscribe(1, "across/t", 0)
				frame := (&codec.Packet{Type: codec.PUBLISH, Topic: []byte("across/t"), Payload: []byte("halves")}).Encode(nil, codec.Version311)
				frame = append(frame, frame...) // two packets, cut at every offset
				for cut := 1; cut < len(frame); cut += 3 {
					r.write(frame[:cut]) // one record
					time.Sleep(time.Millisecond)
					r.write(frame[cut:]) // the next
					r.expectPublish("across/t", "halves", 0, false)
					r.expectPublish("across/t", "halves", 0, false)
				}
			})
		})
	}
}

// holdAfterFirst sends the first write (the ClientHello) at once, whatever
// the shaper does with the others.
type holdAfterFirst struct {
	*shaper
	sent bool
}

func (h *holdAfterFirst) Write(p []byte) (int, error) {
	if !h.sent {
		h.sent = true
		return h.shaper.Conn.Write(p)
	}
	return h.shaper.Write(p)
}

// TestTLSSessionResumption: the tickets the broker sends during the
// handshake (TLS 1.3: NewSessionTicket messages after its Finished) reach the
// client, which resumes with one on its next connection.
func TestTLSSessionResumption(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			tb, tr := startTLS(t, false, func(c *tls.Config) { c.MaxVersion = version })
			tc := tr.clientTC.Clone()
			tc.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i, resumed := range []bool{false, true} {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: v3Wait}, "tcp", tb.Addr, tc)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				r := v3Over(t, c)
				r.send(v3ConnectPacket(codec.Version311, fmt.Sprint("resume-", i), true, 0))
				r.expect(codec.CONNACK) // TLS 1.3: the client takes the tickets while reading it
				if got := c.ConnectionState().DidResume; got != resumed {
					t.Fatalf("connection %d: resumed %v, want %v", i, got, resumed)
				}
				r.send(&codec.Packet{Type: codec.DISCONNECT})
				c.Close()
			}
		})
	}
}

// TestTLSKeyUpdate: OpenSSL's s_client sends a KeyUpdate asking for the
// broker's (its "K" command); the broker answers with its own and both sides
// go on with new keys: the PINGRESP after it is decrypted by the client.
func TestTLSKeyUpdate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed (make deps): ", err)
	}
	tb, _ := startTLS(t, false, nil)
	cmd, stdin, out := startSClient(t, openssl, tb.Addr, "-tls1_3")
	connect := v3ConnectPacket(codec.Version311, "keyupdate", true, 0).Encode(nil, codec.Version311)
	write := func(b []byte) {
		if _, err := stdin.Write(b); err != nil {
			t.Fatalf("s_client stdin: %v", err)
		}
	}
	write(connect)
	out.waitFor(t, []byte{0x20, 2, 0, 0}, "CONNACK")
	write([]byte("K\n")) // KeyUpdate, update_requested
	out.waitFor(t, []byte("KEYUPDATE"), "s_client's KEYUPDATE")
	time.Sleep(100 * time.Millisecond) // a separate read of stdin
	write([]byte{0xc0, 0})             // PINGREQ
	out.waitFor(t, []byte{0xd0, 0}, "PINGRESP under the new keys")
	stdin.Close()
	_ = cmd.Wait()
	if logs := tb.logs.String(); strings.Contains(logs, "tls:") {
		t.Fatalf("broker logged a TLS error:\n%s", logs)
	}
}

// TestTLSRenegotiationRefused: a TLS 1.2 client that asks to renegotiate
// (s_client's "R") is refused, as crypto/tls servers do: the broker logs it
// and closes that connection; another client goes on undisturbed.
func TestTLSRenegotiationRefused(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed (make deps): ", err)
	}
	tb, tr := startTLS(t, false, nil)
	other := v3Over(t, dialShaped(t, tb, tr.clientTC, &shaper{}))
	other.send(v3ConnectPacket(codec.Version311, "bystander", true, 0))
	other.expect(codec.CONNACK)

	cmd, stdin, out := startSClient(t, openssl, tb.Addr, "-tls1_2")
	if _, err := stdin.Write(v3ConnectPacket(codec.Version311, "renegotiator", true, 0).Encode(nil, codec.Version311)); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, []byte{0x20, 2, 0, 0}, "CONNACK")
	if _, err := stdin.Write([]byte("R\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done: // s_client ends when the broker closes the connection
	case <-time.After(v3Wait):
		t.Fatalf("s_client still connected after asking to renegotiate; it printed:\n%q", out.buf)
	}
	waitFor(t, func() bool {
		return strings.Contains(tb.logs.String(), "renegotiator") && strings.Contains(tb.logs.String(), "tls:")
	})
	other.send(&codec.Packet{Type: codec.PINGREQ})
	other.expect(codec.PINGRESP)
}

// TestTLSCloseNotify: a client's close_notify ends its connection like a
// socket closed without DISCONNECT: the broker publishes its will
// [MQTT-3.1.2-8] and closes.
func TestTLSCloseNotify(t *testing.T) {
	tb, tr := startTLS(t, false, nil)
	sub := v3Over(t, dialShaped(t, tb, tr.clientTC, &shaper{}))
	sub.send(v3ConnectPacket(codec.Version311, "watcher", true, 0))
	sub.expect(codec.CONNACK)
	sub.subscribe(1, "wills/#", 0)

	c := dialShaped(t, tb, tr.clientTC, &shaper{})
	r := v3Over(t, c)
	p := v3ConnectPacket(codec.Version311, "leaver", true, 0)
	p.Connect.WillFlag, p.Connect.WillTopic, p.Connect.WillPayload = true, []byte("wills/leaver"), []byte("gone")
	r.send(p)
	r.expect(codec.CONNACK)
	if err := c.CloseWrite(); err != nil { // close_notify
		t.Fatal(err)
	}
	sub.expectPublish("wills/leaver", "gone", 0, false)
	_ = c.SetReadDeadline(time.Now().Add(v3Wait))
	if _, err := c.Read(make([]byte, 1)); err == nil || !v3ClosedErr(err) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("after close_notify: %v, want the connection closed", err)
	}
}

// TestTLSStalledHandshake: a client that stops in the middle of its
// handshake is closed at the CONNECT timeout, and its handshake goroutine
// ends: before its ClientHello is whole, and after it (the goroutine then
// waits for the client's Finished).
func TestTLSStalledHandshake(t *testing.T) {
	tb, tr := startTLS(t, false, nil, func(c *Config) { c.ConnectTimeout = time.Second })

	half := tb.dial(t)
	if _, err := half.Write([]byte{0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00}); err != nil { // a ClientHello's first bytes
		t.Fatal(err)
	}
	sh := &shaper{drop: true}
	sh.Conn = tb.dial(t)
	stalled := tls.Client(&holdAfterFirst{shaper: sh}, tr.clientTC)
	_ = stalled.SetDeadline(time.Now().Add(v3Wait))
	if err := stalled.Handshake(); err != nil { // its Finished is never sent
		t.Fatalf("handshake: %v", err)
	}
	waitFor(t, func() bool { return handshakeGoroutines() == 2 })
	start := time.Now()
	for _, c := range []net.Conn{half, sh.Conn} {
		_ = c.SetReadDeadline(time.Now().Add(v3Wait))
		for {
			if _, err := c.Read(make([]byte, 512)); err != nil {
				if !v3ClosedErr(err) {
					t.Fatalf("want the connection closed, got %v", err)
				}
				break
			}
		}
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Fatalf("closed after %s, want about the 1s CONNECT timeout", waited)
	}
	waitFor(t, func() bool { return handshakeGoroutines() == 0 })
	if logs := tb.logs.String(); !strings.Contains(logs, "TLS handshake failed") && !strings.Contains(logs, "no CONNECT within") {
		t.Fatalf("no log line for the stalled handshakes:\n%s", logs)
	}
}

// handshakeGoroutines counts the goroutines running a TLS handshake.
func handshakeGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "loop.(*tlsConn).handshake(")
}

// TestTLSLargePayload: a 1 MiB message crosses 64 records each way, over
// TLS and wss, at QoS 1, byte for byte.
func TestTLSLargePayload(t *testing.T) {
	for _, ws := range []bool{false, true} {
		t.Run(map[bool]string{false: "tls", true: "wss"}[ws], func(t *testing.T) {
			tb, tr := startTLS(t, ws, nil)
			sub := tb.dialTransport(t, tr, codec.Version311)
			s := v3Over(t, sub.c)
			s.send(v3ConnectPacket(codec.Version311, "big-sub", true, 0))
			s.expect(codec.CONNACK)
			s.subscribe(1, "big", 1)
			pub := v3Over(t, tb.dialTransport(t, tr, codec.Version311).c)
			pub.send(v3ConnectPacket(codec.Version311, "big-pub", true, 0))
			pub.expect(codec.CONNACK)
			payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
			payload[12345] = 'X'
			pub.publish("big", string(payload), 1, 7, false)
			got := s.expect(codec.PUBLISH)
			if !bytes.Equal(got.Payload, payload) {
				t.Fatalf("payload of %d bytes differs from the %d sent", len(got.Payload), len(payload))
			}
			s.send(&codec.Packet{Type: codec.PUBACK, PacketID: got.PacketID})
		})
	}
}

// TestTLSPaho: paho.mqtt.golang publishes and receives QoS 1 and 2 messages
// over TLS and over wss, in order [MQTT-4.6.0-6].
func TestTLSPaho(t *testing.T) {
	for _, ws := range []bool{false, true} {
		t.Run(map[bool]string{false: "ssl", true: "wss"}[ws], func(t *testing.T) {
			tb, tr := startTLS(t, ws, nil)
			url := "ssl://" + tb.Addr
			if ws {
				url = "wss://" + tb.Addr + "/mqtt"
			}
			over := func(o *mqtt.ClientOptions) {
				o.Servers = nil
				o.AddBroker(url).SetTLSConfig(tr.clientTC)
			}
			for _, qos := range []byte{1, 2} {
				in := make(v3Inbox, 200)
				sub := tb.v3Paho(t, 4, fmt.Sprint("paho-sub-", qos), true, over)
				topic := fmt.Sprint("paho/tls/", qos)
				v3Token(t, sub.Subscribe(topic, qos, in.handler), "subscribe")
				pub := tb.v3Paho(t, 4, fmt.Sprint("paho-pub-", qos), true, over)
				const n = 100
				for i := range n {
					v3Token(t, pub.Publish(topic, qos, false, fmt.Sprint(i)), "publish")
				}
				for i := range n {
					if m := in.next(t); string(m.Payload()) != fmt.Sprint(i) || m.Qos() != qos {
						t.Fatalf("message %d: %q at QoS %d, want %q at QoS %d", i, m.Payload(), m.Qos(), fmt.Sprint(i), qos)
					}
				}
			}
		})
	}
}

// sclientOut collects s_client's stdout.
type sclientOut struct {
	mu  sync.Mutex
	buf []byte
}

func (o *sclientOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	return len(p), nil
}

// waitFor waits until want shows up in what s_client printed.
func (o *sclientOut) waitFor(t *testing.T, want []byte, what string) {
	t.Helper()
	deadline := time.Now().Add(v3Wait)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		found := bytes.Contains(o.buf, want)
		o.mu.Unlock()
		if found {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	t.Fatalf("no %s from s_client; it printed:\n%q", what, o.buf)
}

// startSClient runs `openssl s_client` to addr; its stdout and stderr go to
// out, and stdin is the connection's input (and its commands: "K\n" at the
// start of a read asks for a KeyUpdate).
func startSClient(t *testing.T, openssl, addr string, args ...string) (*exec.Cmd, io.WriteCloser, *sclientOut) {
	t.Helper()
	out := &sclientOut{}
	cmd := exec.Command(openssl, append([]string{"s_client", "-connect", addr}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, stdin, out
}

// TestTLSHeldPublisher: a publisher that sends 300 QoS 0 messages in one TLS
// record to a subscriber with a queue of 10 is held back between packets,
// not between records (a record's packets are decrypted at once), so none is
// dropped as queue overflow and all arrive in order [MQTT-4.6.0-6] while the
// subscriber takes them slowly; the same as on plain TCP.
func TestTLSHeldPublisher(t *testing.T) {
	for _, tr := range []transport{{name: "tcp"}, {name: "tls", tls: true}} {
		t.Run(tr.name, func(t *testing.T) {
			opts := session.DefaultOptions()
			opts.MaxQueuedMessages = 10
			tb := startTransport(t, &tr, &opts, nil)
			sub := v3Over(t, tb.dialTransport(t, &tr, codec.Version311).c)
			sub.send(v3ConnectPacket(codec.Version311, "held-sub", true, 0))
			sub.expect(codec.CONNACK)
			sub.subscribe(1, "held/#", 1)
			pub := v3Over(t, tb.dialTransport(t, &tr, codec.Version311).c)
			pub.send(v3ConnectPacket(codec.Version311, "held-pub", true, 0))
			pub.expect(codec.CONNACK)
			const n = 300
			var batch []byte
			for i := range n {
				batch = (&codec.Packet{Type: codec.PUBLISH, Topic: []byte("held/t"),
					Payload: []byte(fmt.Sprint(i))}).Encode(batch, codec.Version311)
			}
			pub.write(batch) // one write: one TLS record
			for i := range n {
				p := sub.expect(codec.PUBLISH)
				if string(p.Payload) != fmt.Sprint(i) {
					t.Fatalf("message %d: %q (dropped %d)", i, p.Payload, tb.Broker.Stats.PublishDropped.Load())
				}
				time.Sleep(200 * time.Microsecond)
			}
			if d := tb.Broker.Stats.PublishDropped.Load(); d != 0 {
				t.Fatalf("%d messages dropped", d)
			}
		})
	}
}

// TestTLSMalformedFirstByte: over TLS too, a packet wrong from its first byte
// (type 0 is reserved [MQTT-2.1.2], with a remaining length claiming 256 MiB)
// closes the connection at once, not at the CONNECT timeout (a minute here):
// the decrypted bytes are judged as they arrive, as gnet's are.
func TestTLSMalformedFirstByte(t *testing.T) {
	tb, tr := startTLS(t, false, nil, func(c *Config) { c.ConnectTimeout = time.Minute })
	r := v3Over(t, dialShaped(t, tb, tr.clientTC, &shaper{}))
	began := time.Now()
	r.write([]byte{0x00, 0xff, 0xff, 0xff, 0x7f})
	r.expectClosed()
	if d := time.Since(began); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}
