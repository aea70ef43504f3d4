package loop

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/auth/goauth"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TestParkedForAuth: on every kind of listener, a client whose CONNECT and
// PUBLISH wait for a slow HTTP auth service (go-auth's contract) is parked:
// the packets it sent behind them wait unread and are then handled in
// order, while another client of the same broker is served at once.
func TestParkedForAuth(t *testing.T) {
	const delay = 300 * time.Millisecond
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body [512]byte
		n, _ := r.Body.Read(body[:])
		if strings.Contains(string(body[:n]), `"slow`) {
			time.Sleep(delay)
		}
		if r.URL.Path == "/superuser" {
			w.WriteHeader(403)
		}
	}))
	defer svc.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(svc.URL, "http://"))
	opts := map[string]string{"backends": "http", "http_host": host, "http_port": port, "http_getuser_uri": "/user",
		"http_superuser_uri": "/superuser", "http_aclcheck_uri": "/acl", "cache": "true"}
	var names []string
	for k := range opts {
		names = append(names, k)
	}
	for _, tr := range transports {
		tr := tr
		t.Run(tr.name, func(t *testing.T) {
			g, err := goauth.New(names, func(k string) (string, bool) { v, ok := opts[k]; return v, ok })
			if err != nil {
				t.Fatal(err)
			}
			o := session.DefaultOptions()
			o.Auth = auth.New(false, nil, g)
			tb := startTransport(t, &tr, &o, nil)
			withUser := func(id, user string) *codec.Packet {
				p := connectPacket(codec.Version5, id, true)
				p.Connect.Username, p.Connect.UsernameFlag = []byte(user), true
				p.Connect.Password, p.Connect.PasswordFlag = []byte("pw"), true
				return p
			}
			other := tb.dialTransport(t, &tr, codec.Version5)
			if ack := other.connect(withUser("other", "fast")); ack.ReasonCode != 0 {
				t.Fatalf("other: CONNACK %#x", ack.ReasonCode)
			}

			slow := tb.dialTransport(t, &tr, codec.Version5)
			slow.dec.Version = codec.Version5
			var b []byte
			b = withUser("slow-1", "slow").Encode(b, codec.Version5)
			b = (&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("t/#"), QoS: 1}}}).Encode(b, codec.Version5)
			b = (&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 2, Topic: []byte("slow/x"), Payload: []byte("p")}).Encode(b, codec.Version5)
			b = (&codec.Packet{Type: codec.PINGREQ}).Encode(b, codec.Version5)
			start := time.Now()
			slow.write(b)

			// Served at once while the slow client waits.
			other.send(&codec.Packet{Type: codec.PINGREQ})
			other.expect(codec.PINGRESP)
			if d := time.Since(start); d > delay/2 {
				t.Errorf("another client's PINGRESP took %v while one waited for auth", d)
			}

			if ack := slow.expect(codec.CONNACK); ack.ReasonCode != 0 {
				t.Fatalf("slow: CONNACK %#x", ack.ReasonCode)
			}
			if d := time.Since(start); d < delay {
				t.Fatalf("CONNACK after %v, before the service answered", d)
			}
			slow.expect(codec.SUBACK)
			mid := time.Now()
			if ack := slow.expect(codec.PUBACK); ack.ReasonCode != 0 && ack.ReasonCode != codec.NoMatchingSubscribers {
				t.Fatalf("PUBACK %#x", ack.ReasonCode)
			}
			if d := time.Since(mid); d < delay*2/3 {
				t.Errorf("PUBACK %v after SUBACK: the publish was not asked about", d)
			}
			slow.expect(codec.PINGRESP)
		})
	}
}

// TestParkedFlood: a client that keeps sending while its CONNECT waits for
// the auth service is not read (gnet's PauseRead): its bytes wait in the
// kernel until TCP stops the sender, so the broker does not buffer them,
// and once the answer comes the client is served.
func TestParkedFlood(t *testing.T) {
	release := make(chan struct{})
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}))
	defer svc.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(svc.URL, "http://"))
	opts := map[string]string{"backends": "http", "http_host": host, "http_port": port, "http_getuser_uri": "/user",
		"http_aclcheck_uri": "/acl", "http_timeout": "30"}
	var names []string
	for k := range opts {
		names = append(names, k)
	}
	g, err := goauth.New(names, func(k string) (string, bool) { v, ok := opts[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	o := session.DefaultOptions()
	o.Auth = auth.New(false, nil, g)
	tb := startBroker(t, &o)
	c := tb.raw(t, codec.Version311)
	p := connectPacket(codec.Version311, "flood", true)
	p.Connect.Username, p.Connect.UsernameFlag = []byte("u"), true
	p.Connect.Password, p.Connect.PasswordFlag = []byte("p"), true
	c.send(p)
	pings := make([]byte, 64<<10)
	for i := 0; i < len(pings); i += 2 {
		pings[i] = 0xC0 // PINGREQ
	}
	// Write until TCP stops us: with the socket unread, the kernel's
	// buffers fill and a write blocks (a few MiB at most on loopback).
	sent := 0
	for sent < 256<<20 {
		_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := c.c.Write(pings)
		sent += n
		if err != nil {
			break
		}
	}
	if sent >= 256<<20 {
		t.Fatalf("wrote %d MiB without being stopped: the parked client is read", sent>>20)
	}
	close(release) // the service answers: the CONNECT goes through, then the PINGREQs
	if ack := c.expect(codec.CONNACK); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	c.expect(codec.PINGRESP)
}
