package loop

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// The limits of mosquitto.conf, through real sockets. Where the behaviour is
// mosquitto's choice rather than the spec's, the comment says what Debian's
// mosquitto 2.0.11 was seen to do with the same setting.

// TestLimitsMaxConnections: a connection over max_connections is closed
// without a CONNACK (mosquitto: "denied: max_connections exceeded", then
// the socket closes), and a slot freed by a disconnect is usable again.
func TestLimitsMaxConnections(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil, func(c *Config) { c.MaxConnections = 2 })
	a := tb.rawV5(t, "a", nil)
	tb.rawV5(t, "b", nil)

	over := tb.raw(t, codec.Version311)
	over.send(connectPacket(codec.Version311, "c", true))
	over.expectClosed()
	tb.waitLog(t, "max_connections (2) reached")

	a.send(&codec.Packet{Type: codec.DISCONNECT})
	a.expectClosed()
	waitFor(t, func() bool { return tb.Broker.Stats.ClientsConnected.Load() == 1 })
	if ack := tb.raw(t, codec.Version311).connect(connectPacket(codec.Version311, "d", true)); ack.ReasonCode != codec.Success {
		t.Fatalf("CONNACK 0x%02x after a slot was freed", ack.ReasonCode)
	}
}

// TestLimitsMaxConnectionsPerListener: max_connections counts per listener,
// and a closed connection frees its slot on the listener it came in on (the
// listener is found again from the socket's local address at close).
func TestLimitsMaxConnectionsPerListener(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil, func(c *Config) {
		// Reuseport's probe gives each port-0 listener its own port.
		c.Listeners, c.ReusePort = nil, true
		c.Listen = []Listener{{Addr: "127.0.0.1:0", MaxConnections: 1}, {Addr: "127.0.0.1:0"}}
	})
	limited, open := tb.Addr, tb.Server.Addrs()[1].String()
	at := func(addr, id string) *rawConn {
		t.Helper()
		r := (&testBroker{Addr: addr}).raw(t, codec.Version311)
		r.send(connectPacket(codec.Version311, id, true))
		return r
	}
	a := at(limited, "a")
	a.expect(codec.CONNACK)
	at(limited, "over").expectClosed()
	for i := range 3 { // the other listener has no limit
		at(open, fmt.Sprintf("o%d", i)).expect(codec.CONNACK)
	}
	a.send(&codec.Packet{Type: codec.DISCONNECT})
	a.expectClosed()
	waitFor(t, func() bool { return tb.Broker.Stats.ClientsConnected.Load() == 3 })
	if ack := at(limited, "b").expect(codec.CONNACK); ack.ReasonCode != codec.Success {
		t.Fatalf("CONNACK 0x%02x after the slot was freed", ack.ReasonCode)
	}
}

// TestLimitsMaxPacketSize: an inbound packet over max_packet_size ends the
// connection: v5 with DISCONNECT 0x95 [MQTT-3.2.2-15] (the limit having
// been announced in the CONNACK), v3 by closing (no DISCONNECT exists).
// Only the fixed header is sent: the frame is refused from its announced
// length, before its body is buffered.
func TestLimitsMaxPacketSize(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MaxPacketSize = 64
	tb := startBroker(t, &opts)
	// PUBLISH QoS 0 announcing 1 MiB of remaining length, body never sent.
	hugeHeader := []byte{0x30, 0x80, 0x80, 0x40}
	tests := []struct {
		name    string
		version byte
		frame   []byte
	}{
		{"v5 header only", codec.Version5, hugeHeader},
		{"v3 header only", codec.Version311, hugeHeader},
		{"v5 whole", codec.Version5, (&codec.Packet{Type: codec.PUBLISH, Topic: []byte("t"), Payload: make([]byte, 100)}).Encode(nil, codec.Version5)},
		{"v3 whole", codec.Version311, (&codec.Packet{Type: codec.PUBLISH, Topic: []byte("t"), Payload: make([]byte, 100)}).Encode(nil, codec.Version311)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tb.raw(t, tt.version)
			ack := r.connect(connectPacket(tt.version, "big", true))
			if tt.version == codec.Version5 && ack.Props.MaximumPacketSize != 64 {
				t.Fatalf("CONNACK maximum packet size %d, want 64", ack.Props.MaximumPacketSize)
			}
			r.publish("fits", "small", 1, 1, nil)
			r.write(tt.frame)
			if tt.version == codec.Version5 {
				r.expectDisconnect(codec.PacketTooLarge)
			} else {
				r.expectClosed()
			}
		})
	}
}

// TestLimitsMessageSizeLimit: a PUBLISH whose payload is over
// message_size_limit is dropped, not delivered, and the connection stays.
// QoS 1 is acknowledged, as mosquitto 2.0.11 does, but with v5 PUBACK 0x97
// (quota exceeded) where mosquitto sends 0x95, which is not a PUBACK reason
// code [MQTT-3.4.2-1].
func TestLimitsMessageSizeLimit(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MessageSizeLimit = 10
	tb := startBroker(t, &opts)
	sub := tb.rawV5(t, "sub", nil)
	sub.subscribe(1, codec.Subscription{Filter: []byte("msl/#"), QoS: 1}, 0)

	for _, version := range []byte{codec.Version311, codec.Version5} {
		r := tb.raw(t, version)
		r.connect(connectPacket(version, "pub", true))
		r.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("msl/big"), Payload: make([]byte, 11), QoS: 1, PacketID: 7})
		ack := r.expect(codec.PUBACK)
		if ack.PacketID != 7 || (version == codec.Version5 && ack.ReasonCode != codec.QuotaExceeded) {
			t.Errorf("v%d: PUBACK id %d reason 0x%02x, want id 7 reason 0x97 (v5)", version, ack.PacketID, ack.ReasonCode)
		}
		r.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("msl/big"), Payload: make([]byte, 11)})
		r.publish("msl/fits", "0123456789", 1, 8, nil) // exactly the limit: delivered
		p := sub.expect(codec.PUBLISH)
		if string(p.Topic) != "msl/fits" {
			t.Fatalf("v%d: subscriber got %q, want only msl/fits", version, p.Topic)
		}
		sub.send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
		sub.expectQuiet()
	}
}

// TestLimitsMaxKeepalive: v5 clients asking for more than max_keepalive (or
// 0) get the limit as Server Keep Alive [MQTT-3.2.2-21]; v3 clients are
// refused with CONNACK 0x02, as mosquitto does since 2.0.12 (Debian's 2.0.11
// still accepted them).
func TestLimitsMaxKeepalive(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MaxKeepalive = 30
	tb := startBroker(t, &opts)
	tests := []struct {
		version   byte
		ask       uint16
		code      byte
		serverKA  uint16 // v5: 0 means no Server Keep Alive property
		connected bool
	}{
		{codec.Version5, 60, codec.Success, 30, true},
		{codec.Version5, 0, codec.Success, 30, true},
		{codec.Version5, 30, codec.Success, 0, true},
		{codec.Version311, 60, codec.ConnRefusedIdentifierRejected, 0, false},
		{codec.Version311, 0, codec.ConnRefusedIdentifierRejected, 0, false},
		{codec.Version311, 30, codec.Success, 0, true},
		{codec.Version31, 31, codec.ConnRefusedIdentifierRejected, 0, false},
	}
	for _, tt := range tests {
		r := tb.raw(t, tt.version)
		p := connectPacket(tt.version, "ka", true)
		p.Connect.KeepAlive = tt.ask
		ack := r.connect(p)
		if ack.ReasonCode != tt.code {
			t.Errorf("v%d keepalive %d: CONNACK 0x%02x, want 0x%02x", tt.version, tt.ask, ack.ReasonCode, tt.code)
			continue
		}
		if tt.version == codec.Version5 {
			got := uint16(0)
			if ack.Props.Has(codec.PropServerKeepAlive) {
				got = ack.Props.ServerKeepAlive
			}
			if got != tt.serverKA {
				t.Errorf("v5 keepalive %d: Server Keep Alive %d, want %d", tt.ask, got, tt.serverKA)
			}
		}
		if tt.connected {
			r.send(&codec.Packet{Type: codec.PINGREQ})
			r.expect(codec.PINGRESP)
			r.send(&codec.Packet{Type: codec.DISCONNECT})
		}
		r.expectClosed()
	}
}

// TestLimitsRetainUnavailable: with retain_available false the v5 CONNACK
// says Retain Available 0; a retained PUBLISH then ends the connection
// (v5: DISCONNECT 0x9A; v3: closed, as mosquitto 2.0.11 does), a retained
// will is refused with CONNACK 0x9A [MQTT-3.2.2-13], and nothing is stored.
func TestLimitsRetainUnavailable(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.RetainAvailable = false
	tb := startBroker(t, &opts)

	for _, version := range []byte{codec.Version5, codec.Version311} {
		for _, qos := range []byte{0, 1} {
			r := tb.raw(t, version)
			ack := r.connect(connectPacket(version, "ret", true))
			if version == codec.Version5 && (!ack.Props.Has(codec.PropRetainAvailable) || ack.Props.RetainAvailable != 0) {
				t.Fatalf("CONNACK does not say Retain Available 0")
			}
			r.publish("plain", "ok", 1, 1, nil) // not retained: fine
			r.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("kept"), Payload: []byte("x"), QoS: qos, PacketID: 2, Retain: true})
			if version == codec.Version5 { // [MQTT-3.2.2-14] forbade it
				r.expectDisconnect(codec.RetainNotSupported)
			} else {
				r.expectClosed()
			}
		}
	}

	r := tb.raw(t, codec.Version5)
	p := connectPacket(codec.Version5, "will", true)
	p.Connect.WillFlag, p.Connect.WillRetain = true, true
	p.Connect.WillTopic, p.Connect.WillPayload = []byte("w"), []byte("gone")
	if ack := r.connect(p); ack.ReasonCode != codec.RetainNotSupported {
		t.Fatalf("retained will: CONNACK 0x%02x, want 0x9A", ack.ReasonCode)
	}
	r.expectClosed()
	if n := tb.Broker.Stats.RetainedMessages.Load(); n != 0 {
		t.Fatalf("%d retained messages stored", n)
	}
}

// TestLimitsMaxQueuedMessages: an offline persistent session queues at most
// max_queued_messages; the rest are dropped and counted (mosquitto's
// $SYS/broker/publish/messages/dropped), and the queued ones arrive in order
// on reconnect [MQTT-4.6.0-6].
func TestLimitsMaxQueuedMessages(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MaxQueuedMessages = 5
	tb := startBroker(t, &opts)

	sub := tb.raw(t, codec.Version311)
	sub.connect(connectPacket(codec.Version311, "slow", false))
	sub.subscribe(1, codec.Subscription{Filter: []byte("q/#"), QoS: 1}, 0)
	sub.send(&codec.Packet{Type: codec.DISCONNECT})
	sub.expectClosed()
	waitFor(t, func() bool { return tb.Broker.Stats.ClientsConnected.Load() == 0 })

	pub := tb.rawV5(t, "pub", nil)
	for i := range 12 {
		pub.publish("q/x", string(rune('a'+i)), 1, uint16(i+1), nil)
	}
	if got := tb.Broker.Stats.PublishDropped.Load(); got != 7 {
		t.Fatalf("dropped %d, want 7", got)
	}

	again := tb.raw(t, codec.Version311)
	if ack := again.connect(connectPacket(codec.Version311, "slow", false)); !ack.SessionPresent {
		t.Fatal("session not present on reconnect")
	}
	for i := range 5 {
		p := again.expect(codec.PUBLISH)
		if want := string(rune('a' + i)); string(p.Payload) != want {
			t.Fatalf("message %d: %q, want %q", i, p.Payload, want)
		}
		again.send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	}
	again.expectQuiet()
}

// TestLimitsClientID: allow_zero_length_clientid and auto_id_prefix. An
// empty client id is refused when not allowed [MQTT-3.1.3-8] (v3.1.1:
// CONNACK 0x02; v5: 0x85, where mosquitto 2.0.11 sends 0x80); otherwise
// the server assigns one with the prefix [MQTT-3.1.3-6] and a v5 CONNACK
// carries it [MQTT-3.2.2-16].
func TestLimitsClientID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allow   bool
		version byte
		code    byte
	}{
		{"refused v3.1.1", false, codec.Version311, codec.ConnRefusedIdentifierRejected},
		{"refused v5", false, codec.Version5, codec.UnspecifiedError}, // mosquitto's code
		{"assigned v3.1.1", true, codec.Version311, codec.Success},
		{"assigned v5", true, codec.Version5, codec.Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := session.DefaultOptions()
			opts.AllowZeroLengthID = tt.allow
			opts.AutoIDPrefix = "zz-"
			tb := startBroker(t, &opts)
			r := tb.raw(t, tt.version)
			ack := r.connect(connectPacket(tt.version, "", true))
			if ack.ReasonCode != tt.code {
				t.Fatalf("CONNACK 0x%02x, want 0x%02x", ack.ReasonCode, tt.code)
			}
			if tt.code != codec.Success {
				r.expectClosed()
				return
			}
			if tt.version == codec.Version5 && !strings.HasPrefix(string(ack.Props.AssignedClientID), "zz-") {
				t.Errorf("assigned client id %q lacks the prefix zz-", ack.Props.AssignedClientID)
			}
			tb.waitLog(t, " as zz-")
		})
	}
}

// waitLog waits until the broker's log contains s.
func (tb *testBroker) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(tb.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q:\n%s", s, tb.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLimitsMessageSizeLimitWill: message_size_limit covers a will's
// payload too: a CONNECT whose will is over it is refused, with CONNACK 5
// (v3) or 0x95 packet too large (v5), as mosquitto does (issue 21); a will
// at the limit is accepted and published.
func TestLimitsMessageSizeLimitWill(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MessageSizeLimit = 10
	tb := startBroker(t, &opts)
	sub := tb.rawV5(t, "will-sub", nil)
	sub.subscribe(1, codec.Subscription{Filter: []byte("mslw/#")}, 0)
	for _, version := range []byte{codec.Version311, codec.Version5} {
		want := codec.ConnRefusedNotAuthorized
		if version == codec.Version5 {
			want = codec.PacketTooLarge
		}
		for _, size := range []int{11, 10} {
			r := tb.raw(t, version)
			p := connectPacket(version, fmt.Sprintf("mslw-%d-%d", version, size), true)
			p.Connect.WillFlag, p.Connect.WillTopic = true, []byte(fmt.Sprintf("mslw/%d", version))
			p.Connect.WillPayload = make([]byte, size)
			ack := r.connect(p)
			if size > 10 {
				if ack.ReasonCode != want {
					t.Fatalf("v%d will of %d bytes: CONNACK 0x%02x, want 0x%02x", version, size, ack.ReasonCode, want)
				}
				continue
			}
			if ack.ReasonCode != codec.Success {
				t.Fatalf("v%d will of %d bytes: CONNACK 0x%02x", version, size, ack.ReasonCode)
			}
			r.c.Close() // no DISCONNECT: the will goes
			if m := sub.expect(codec.PUBLISH); len(m.Payload) != size {
				t.Fatalf("v%d: will of %d bytes, want %d", version, len(m.Payload), size)
			}
		}
	}
	sub.expectQuiet()
}
