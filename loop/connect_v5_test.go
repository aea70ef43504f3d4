package loop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// v5Wait bounds every wait for something the broker must do.
const v5Wait = 5 * time.Second

// quietWait is how long a test watches for something the broker must not do.
const quietWait = 300 * time.Millisecond

// rawConn is a raw socket that writes and reads codec packets, for tests
// that check exact bytes or send what no real client would.
type rawConn struct {
	t   testing.TB
	c   net.Conn
	dec codec.Decoder
	buf []byte
}

// raw dials the broker; version is the protocol level used to encode and
// decode (set again by connect).
func (tb *testBroker) raw(t testing.TB, version byte) *rawConn {
	t.Helper()
	r := &rawConn{t: t, c: tb.dial(t)}
	r.dec.Version = version
	return r
}

// write sends raw bytes.
func (r *rawConn) write(b []byte) {
	r.t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(v5Wait))
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// send encodes p at the connection's protocol level and sends it.
func (r *rawConn) send(p *codec.Packet) {
	r.t.Helper()
	r.write(p.Encode(nil, r.dec.Version))
}

// next returns the next packet, decoded into a fresh Packet that owns its
// bytes, or the read error (io.EOF when the broker closed the connection).
func (r *rawConn) next(wait time.Duration) (*codec.Packet, error) {
	return readPacket(r.c, &r.buf, &r.dec, wait)
}

// readPacket reads the next packet from c (buffering in *buf), decoded into
// a fresh Packet that owns its bytes, or returns the read error (io.EOF when
// the broker closed the connection). Shared by the raw-socket test clients.
func readPacket(c net.Conn, buf *[]byte, dec *codec.Decoder, wait time.Duration) (*codec.Packet, error) {
	deadline := time.Now().Add(wait)
	for {
		if total, err := codec.FrameSize(*buf, 0); err == nil && len(*buf) >= total {
			frame := append([]byte(nil), (*buf)[:total]...)
			*buf = (*buf)[total:]
			p := new(codec.Packet)
			if _, err := dec.Decode(frame, p); err != nil {
				return nil, err
			}
			return p, nil
		}
		_ = c.SetReadDeadline(deadline)
		var tmp [4096]byte
		n, err := c.Read(tmp[:])
		*buf = append(*buf, tmp[:n]...)
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

// expect reads the next packet and checks its type.
func (r *rawConn) expect(want codec.PacketType) *codec.Packet {
	r.t.Helper()
	p, err := r.next(v5Wait)
	if err != nil {
		r.t.Fatalf("waiting for %v: %v", want, err)
	}
	if p.Type != want {
		r.t.Fatalf("got %v (reason 0x%02x), want %v", p.Type, p.ReasonCode, want)
	}
	return p
}

// expectQuiet checks that nothing arrives for quietWait.
func (r *rawConn) expectQuiet() {
	r.t.Helper()
	p, err := r.next(quietWait)
	if err == nil {
		r.t.Fatalf("unexpected %v (topic %q, reason 0x%02x)", p.Type, p.Topic, p.ReasonCode)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		r.t.Fatalf("connection lost: %v", err)
	}
}

// expectClosed checks that the broker closes the connection, after sending
// nothing more.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	p, err := r.next(v5Wait)
	if err == nil {
		r.t.Fatalf("got %v (reason 0x%02x), want the connection closed", p.Type, p.ReasonCode)
	}
	if !isClosedErr(err) {
		r.t.Fatalf("want the connection closed, got %v", err)
	}
}

// expectDisconnect checks for a v5 DISCONNECT with reason, then the close.
func (r *rawConn) expectDisconnect(reason byte) {
	r.t.Helper()
	p := r.expect(codec.DISCONNECT)
	if p.ReasonCode != reason {
		r.t.Fatalf("DISCONNECT reason 0x%02x, want 0x%02x", p.ReasonCode, reason)
	}
	r.expectClosed()
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset")
}

// connectPacket is a CONNECT at version with client id and clean start.
func connectPacket(version byte, id string, clean bool) *codec.Packet {
	p := &codec.Packet{Type: codec.CONNECT}
	p.Connect = codec.Connect{ProtocolLevel: version, CleanStart: clean, ClientID: []byte(id)}
	return p
}

// connect sends p (a CONNECT) and returns the CONNACK.
func (r *rawConn) connect(p *codec.Packet) *codec.Packet {
	r.t.Helper()
	r.dec.Version = p.Connect.ProtocolLevel
	r.send(p)
	return r.expect(codec.CONNACK)
}

// rawV5 dials and connects a v5 client with clean start, checking success.
func (tb *testBroker) rawV5(t testing.TB, id string, props func(*codec.Properties)) *rawConn {
	t.Helper()
	r := tb.raw(t, codec.Version5)
	p := connectPacket(codec.Version5, id, true)
	if props != nil {
		props(&p.Props)
	}
	if ack := r.connect(p); ack.ReasonCode != codec.Success {
		t.Fatalf("CONNACK reason 0x%02x", ack.ReasonCode)
	}
	return r
}

// subscribe sends a SUBSCRIBE of one filter and checks the SUBACK.
func (r *rawConn) subscribe(id uint16, sub codec.Subscription, subID uint32) {
	r.t.Helper()
	p := &codec.Packet{Type: codec.SUBSCRIBE, PacketID: id, Subscriptions: []codec.Subscription{sub}}
	if subID > 0 {
		p.Props.SubscriptionIDs = []uint32{subID}
	}
	r.send(p)
	ack := r.expect(codec.SUBACK)
	if ack.PacketID != id || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != sub.QoS {
		r.t.Fatalf("SUBACK id %d codes % x, want id %d code %d", ack.PacketID, ack.ReasonCodes, id, sub.QoS)
	}
}

// publish sends a PUBLISH and completes its QoS 1 or 2 flow.
func (r *rawConn) publish(topic, payload string, qos byte, id uint16, props func(*codec.Properties)) {
	r.t.Helper()
	p := &codec.Packet{Type: codec.PUBLISH, Topic: []byte(topic), Payload: []byte(payload), QoS: qos, PacketID: id}
	if props != nil {
		props(&p.Props)
	}
	r.send(p)
	switch qos {
	case 1:
		if ack := r.expect(codec.PUBACK); ack.PacketID != id {
			r.t.Fatalf("PUBACK id %d, want %d", ack.PacketID, id)
		}
	case 2:
		if ack := r.expect(codec.PUBREC); ack.PacketID != id {
			r.t.Fatalf("PUBREC id %d, want %d", ack.PacketID, id)
		}
		r.send(&codec.Packet{Type: codec.PUBREL, PacketID: id})
		if ack := r.expect(codec.PUBCOMP); ack.PacketID != id {
			r.t.Fatalf("PUBCOMP id %d, want %d", ack.PacketID, id)
		}
	}
}

// pahoV5 is a paho.golang v5 client with its received messages and the
// DISCONNECT the broker sent, if any.
type pahoV5 struct {
	*paho.Client
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
}

// paho connects a paho.golang client with cp and returns it with the CONNACK.
// A refused CONNECT fails the test unless refusedOK.
func (tb *testBroker) paho(t testing.TB, cp *paho.Connect, refusedOK bool) (*pahoV5, *paho.Connack) {
	t.Helper()
	pc := &pahoV5{msgs: make(chan *paho.Publish, 1000), disc: make(chan *paho.Disconnect, 1)}
	pc.Client = paho.NewClient(paho.ClientConfig{
		Conn: tb.dial(t),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			pc.msgs <- r.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { pc.disc <- d },
	})
	ctx, cancel := context.WithTimeout(context.Background(), v5Wait)
	defer cancel()
	ack, err := pc.Connect(ctx, cp)
	if err != nil && (!refusedOK || ack == nil) {
		t.Fatalf("paho connect: %v", err)
	}
	if err == nil {
		t.Cleanup(func() { _ = pc.Disconnect(&paho.Disconnect{}) })
	}
	return pc, ack
}

// sub subscribes with paho and checks every filter was granted.
func (pc *pahoV5) sub(t testing.TB, s *paho.Subscribe) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), v5Wait)
	defer cancel()
	ack, err := pc.Subscribe(ctx, s)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i, r := range ack.Reasons {
		if r != s.Subscriptions[i].QoS {
			t.Fatalf("SUBACK reason %d = 0x%02x, want %d", i, r, s.Subscriptions[i].QoS)
		}
	}
}

// pub publishes with paho, waiting for the QoS 1/2 flow to finish.
func (pc *pahoV5) pub(t testing.TB, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), v5Wait)
	defer cancel()
	if _, err := pc.Publish(ctx, p); err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
}

// recv waits for the next message.
func (pc *pahoV5) recv(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-pc.msgs:
		return m
	case <-time.After(v5Wait):
		t.Fatal("no message")
		return nil
	}
}

// quiet checks that no message arrives for quietWait.
func (pc *pahoV5) quiet(t testing.TB) {
	t.Helper()
	select {
	case m := <-pc.msgs:
		t.Fatalf("unexpected message on %s: %q", m.Topic, m.Payload)
	case <-time.After(quietWait):
	}
}

// TestConnectV5Refused checks the CONNACK reason codes of refused v5
// CONNECTs, byte for byte, and that the connection is then closed
// [MQTT-3.2.2-6/7].
func TestConnectV5Refused(t *testing.T) {
	t.Parallel()
	noZeroID := session.DefaultOptions()
	noZeroID.AllowZeroLengthID = false
	tests := []struct {
		name string
		opts *session.Options
		raw  []byte
		want []byte
	}{
		{"UnsupportedProtocolName", nil, []byte{ // [MQTT-3.1.2-1]
			0x10, 13, 0, 4, 'M', 'Q', 'T', 'X', 5, 0x02, 0, 0, 0, 0, 0,
		}, []byte{0x20, 3, 0, codec.UnsupportedProtocolVersion, 0}},
		{"UnsupportedLevel6", nil, []byte{ // [MQTT-3.1.2-2]: level unknown, answered in 3.1.1 form
			0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 6, 0x02, 0, 0, 0, 0,
		}, []byte{0x20, 2, 0, codec.ConnRefusedProtocolVersion}},
		{"EmptyClientIDNotAllowed", &noZeroID, []byte{ // [MQTT-3.1.3-8]: 0x85 is a MAY; mosquitto sends 0x80
			0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0, 0, 0, 0,
		}, []byte{0x20, 3, 0, codec.UnspecifiedError, 0}},
		{"AuthMethodUnsupported", nil, []byte{ // [MQTT-4.12.0-1]
			0x10, 22, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0,
			8, 0x15, 0, 5, 'S', 'C', 'R', 'A', 'M', // authentication method
			0, 1, 'a',
		}, []byte{0x20, 3, 0, codec.BadAuthenticationMethod, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := startBroker(t, tt.opts)
			r := tb.raw(t, codec.Version5)
			r.write(tt.raw)
			got := make([]byte, len(tt.want))
			_ = r.c.SetReadDeadline(time.Now().Add(v5Wait))
			if _, err := io.ReadFull(r.c, got); err != nil {
				t.Fatalf("read CONNACK: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("CONNACK % x, want % x", got, tt.want)
			}
			r.expectClosed()
		})
	}
}

// TestConnectV5AssignedClientID checks that an empty client id gets a unique
// identifier, returned in the CONNACK [MQTT-3.2.2-16], of mosquitto's form:
// "auto-" and a random UUID.
var assignedIDForm = regexp.MustCompile(`^auto-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestConnectV5AssignedClientID(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		_, ack := tb.paho(t, &paho.Connect{CleanStart: true}, false)
		if ack.Properties == nil || ack.Properties.AssignedClientID == "" {
			t.Fatal("CONNACK without assigned client identifier")
		}
		id := ack.Properties.AssignedClientID
		if !assignedIDForm.MatchString(id) || seen[id] {
			t.Fatalf("assigned id %q: want a new id auto-<uuid v4>", id)
		}
		seen[id] = true
	}
	// A client that chose its id is not told one.
	_, ack := tb.paho(t, &paho.Connect{ClientID: "mine", CleanStart: true}, false)
	if ack.Properties != nil && ack.Properties.AssignedClientID != "" {
		t.Fatalf("assigned %q to a client with an id", ack.Properties.AssignedClientID)
	}
}

// TestConnectV5ServerKeepalive checks that a keepalive over max_keepalive
// (or 0) is lowered with Server Keep Alive [MQTT-3.2.2-21/22].
func TestConnectV5ServerKeepalive(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MaxKeepalive = 30
	tb := startBroker(t, &opts)
	tests := []struct {
		ask  uint16
		want uint16 // 0: no Server Keep Alive
	}{{60, 30}, {0, 30}, {10, 0}, {30, 0}}
	for _, tt := range tests {
		_, ack := tb.paho(t, &paho.Connect{CleanStart: true, KeepAlive: tt.ask}, false)
		var got uint16
		if ack.Properties != nil && ack.Properties.ServerKeepAlive != nil {
			got = *ack.Properties.ServerKeepAlive
		}
		if got != tt.want {
			t.Errorf("keepalive %d: server keepalive %d, want %d", tt.ask, got, tt.want)
		}
	}
}

// TestConnectV5ConnackProperties checks the limits a CONNACK announces:
// receive maximum, maximum packet size and topic alias maximum [MQTT-3.2.2].
func TestConnectV5ConnackProperties(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MaxInflight = 7
	opts.MaxPacketSize = 4096
	opts.MaxTopicAlias = 5
	tb := startBroker(t, &opts)
	_, ack := tb.paho(t, &paho.Connect{ClientID: "props", CleanStart: true}, false)
	p := ack.Properties
	if p == nil || p.ReceiveMaximum == nil || *p.ReceiveMaximum != 7 ||
		p.MaximumPacketSize == nil || *p.MaximumPacketSize != 4096 ||
		p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != 5 {
		t.Fatalf("CONNACK properties %+v", p)
	}
}

// TestConnectV5Takeover checks that a second connection with the same
// client id closes the first with DISCONNECT 0x8E [MQTT-3.1.4-3] and resumes
// its session when the first one's outlives its connection (expiry > 0). A
// session with expiry 0 ends with its connection [MQTT-3.1.2-23], so taking
// it over starts a new one: session present 0 and no subscriptions (as
// mosquitto does).
func TestConnectV5Takeover(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	for _, expiry := range []uint32{60, 0} {
		id := fmt.Sprintf("twin-%d", expiry)
		first := tb.rawV5(t, id, func(p *codec.Properties) {
			p.SessionExpiry = expiry
			p.Set(codec.PropSessionExpiry)
		})
		first.subscribe(1, codec.Subscription{Filter: []byte(id), QoS: 1}, 0)
		second := tb.raw(t, codec.Version5)
		cp := connectPacket(codec.Version5, id, false)
		cp.Props.SessionExpiry = 60
		cp.Props.Set(codec.PropSessionExpiry)
		if ack := second.connect(cp); ack.SessionPresent != (expiry > 0) {
			t.Fatalf("expiry %d: session present %v on takeover", expiry, ack.SessionPresent)
		}
		first.expectDisconnect(codec.SessionTakenOver)
		second.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte(id), Payload: []byte("x"), QoS: 1, PacketID: 7})
		if expiry == 0 { // no subscription: the PUBACK says so
			if ack := second.expect(codec.PUBACK); ack.ReasonCode != codec.NoMatchingSubscribers {
				t.Fatalf("expiry 0: PUBACK reason 0x%02x, want 0x10", ack.ReasonCode)
			}
			continue
		}
		// The new connection has the session's subscription and works.
		for i := 0; i < 2; i++ { // the PUBACK and the message, in either order
			p, err := second.next(v5Wait)
			if err != nil {
				t.Fatal(err)
			}
			if p.Type == codec.PUBLISH && string(p.Payload) != "x" {
				t.Fatalf("payload %q", p.Payload)
			}
		}
	}
}

// TestConnectV5ProtocolErrors checks that an AUTH packet (no authentication
// method is supported) and a second CONNECT end the connection with
// DISCONNECT 0x82 [MQTT-4.12.0-1] [MQTT-3.1.0-2].
func TestConnectV5ProtocolErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    *codec.Packet
	}{
		{"Auth", &codec.Packet{Type: codec.AUTH, ReasonCode: codec.ContinueAuthentication}},
		{"SecondConnect", connectPacket(codec.Version5, "again", true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := startBroker(t, nil)
			other := tb.rawV5(t, "other", nil)
			r := tb.rawV5(t, "pe", nil)
			r.send(tt.p)
			r.expectDisconnect(codec.ProtocolError)
			other.send(&codec.Packet{Type: codec.PINGREQ})
			other.expect(codec.PINGRESP)
		})
	}
}

// TestConnectV5ConnackOverMaximumPacketSize: a client whose Maximum Packet
// Size is below the smallest CONNACK gets none: the broker must not send it
// [MQTT-3.1.2-24], so it closes the connection without a word (as mosquitto
// does, issue 21). A limit the CONNACK fits still connects.
func TestConnectV5ConnackOverMaximumPacketSize(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	for _, max := range []uint32{2, 4} { // a v5 CONNACK takes at least 5 bytes
		r := tb.raw(t, codec.Version5)
		p := connectPacket(codec.Version5, fmt.Sprintf("tiny-%d", max), true)
		p.Props.MaximumPacketSize = max
		p.Props.Set(codec.PropMaximumPacketSize)
		r.send(p)
		if got, err := r.next(v5Wait); err == nil {
			t.Fatalf("maximum packet size %d: got %v, want the connection closed", max, got.Type)
		} else if !v3ClosedErr(err) {
			t.Fatalf("maximum packet size %d: want the connection closed, got %v", max, err)
		}
	}
	// The refused connections were never counted as connected, so their
	// closing must not uncount them ($SYS/broker/clients/connected).
	for _, id := range []string{"tiny-2", "tiny-4"} {
		waitFor(t, func() bool { return strings.Contains(tb.logs.String(), "Client "+id+" closed its connection") })
	}
	if n := tb.Broker.Stats.ClientsConnected.Load(); n != 0 {
		t.Fatalf("clients connected after the refused CONNACKs: %d, want 0", n)
	}
	r := tb.raw(t, codec.Version5)
	p := connectPacket(codec.Version5, "fits", true)
	p.Props.MaximumPacketSize = 64
	p.Props.Set(codec.PropMaximumPacketSize)
	if ack := r.connect(p); ack.ReasonCode != codec.Success {
		t.Fatalf("maximum packet size 64: CONNACK 0x%02x", ack.ReasonCode)
	}
	if n := tb.Broker.Stats.ClientsConnected.Load(); n != 1 {
		t.Fatalf("clients connected: %d, want 1", n)
	}
}
