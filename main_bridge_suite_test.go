package main

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// The behaviour of mosquitto's bridges that its own tests (06-bridge-*)
// check byte for byte, each shown here through real sockets, the remote
// played by the test.

// remoteScript is a bridge's remote broker played by the test.
type remoteScript struct {
	t       *testing.T
	ln      net.Listener
	version byte
}

func newRemoteScript(t *testing.T, version byte) *remoteScript {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &remoteScript{t: t, ln: ln, version: version}
}

// accept takes the bridge's next connection and returns it with its CONNECT
// (answered with a plain CONNACK).
func (r *remoteScript) accept() (*mq, *codec.Packet) {
	r.t.Helper()
	return acceptBridge(r.t, r.ln, r.version, false)
}

// expectID reads the next packet and checks its type and packet id.
func expectID(m *mq, want codec.PacketType, id uint16) *codec.Packet {
	m.t.Helper()
	p := m.expect(want)
	if p.PacketID != id {
		m.t.Fatalf("%v with packet id %d, want %d", want, p.PacketID, id)
	}
	return p
}

// TestBridgeResendAfterReconnect: a bridge is one session with its remote
// across connections, as mosquitto's: packet ids go on from one connection
// to the next (SUBSCRIBE and PUBLISH share them), and what was in flight is
// sent again after the subscriptions, a PUBLISH with DUP and its first id,
// a PUBREL with its id [MQTT-4.4.0-1], [MQTT-3.3.1-1]. A v5 bridge asks for
// max_inflight_messages as its receive maximum and for no session expiry
// (unless bridge_session_expiry_interval), and adds no user property to what
// it forwards. (mosquitto's 06-bridge-br2b-disconnect-qos2.)
func TestBridgeResendAfterReconnect(t *testing.T) {
	for _, v := range []byte{codec.Version311, codec.Version5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			r := newRemoteScript(t, v)
			local := newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nnotifications false\nrestart_timeout 1\n"+
				"bridge_protocol_version %s\ntry_private false\ntopic b/# both 2\n", r.ln.Addr(),
				map[byte]string{codec.Version311: "mqttv311", codec.Version5: "mqttv50"}[v]), true)
			lp := local.publisher("lp")

			m, cp := r.accept()
			if v == codec.Version5 {
				if !cp.Props.Has(codec.PropReceiveMaximum) || cp.Props.ReceiveMaximum != 20 {
					t.Errorf("CONNECT receive maximum %v %d, want 20", cp.Props.Has(codec.PropReceiveMaximum), cp.Props.ReceiveMaximum)
				}
				if cp.Props.Has(codec.PropSessionExpiry) {
					t.Errorf("CONNECT with a session expiry of %d, want none", cp.Props.SessionExpiry)
				}
			}
			expectID(m, codec.SUBSCRIBE, 1)
			m.send(&codec.Packet{Type: codec.SUBACK, PacketID: 1, ReasonCodes: []byte{2}})
			publish(t, lp, "b/x", "m1", 2, false)
			p := expectID(m, codec.PUBLISH, 2)
			if p.Dup || p.QoS != 2 || len(p.Props.User) != 0 {
				t.Fatalf("first PUBLISH: dup %v, QoS %d, user properties %d", p.Dup, p.QoS, len(p.Props.User))
			}
			m.c.Close() // before the PUBREC

			m, _ = r.accept()
			expectID(m, codec.SUBSCRIBE, 3)
			m.send(&codec.Packet{Type: codec.SUBACK, PacketID: 3, ReasonCodes: []byte{2}})
			p = expectID(m, codec.PUBLISH, 2)
			if !p.Dup || string(p.Payload) != "m1" {
				t.Fatalf("resent PUBLISH: dup %v, payload %q", p.Dup, p.Payload)
			}
			m.send(&codec.Packet{Type: codec.PUBREC, PacketID: 2})
			expectID(m, codec.PUBREL, 2)
			m.c.Close() // before the PUBCOMP

			m, _ = r.accept()
			expectID(m, codec.SUBSCRIBE, 4)
			m.send(&codec.Packet{Type: codec.SUBACK, PacketID: 4, ReasonCodes: []byte{2}})
			expectID(m, codec.PUBREL, 2)
			m.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: 2})
			publish(t, lp, "b/y", "m2", 2, false)
			if p = expectID(m, codec.PUBLISH, 5); p.Dup || string(p.Payload) != "m2" {
				t.Fatalf("next PUBLISH: dup %v, payload %q", p.Dup, p.Payload)
			}
		})
	}
}

// TestBridgeSessionExpiryInterval: bridge_session_expiry_interval (mosquitto
// 2.1's key) is the session expiry a v5 bridge asks its remote for.
func TestBridgeSessionExpiryInterval(t *testing.T) {
	r := newRemoteScript(t, codec.Version5)
	newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nnotifications false\nbridge_protocol_version mqttv50\n"+
		"bridge_session_expiry_interval 600\ntopic b/# out 1\n", r.ln.Addr()), true)
	_, cp := r.accept()
	if !cp.Props.Has(codec.PropSessionExpiry) || cp.Props.SessionExpiry != 600 {
		t.Fatalf("CONNECT session expiry %v %d, want 600", cp.Props.Has(codec.PropSessionExpiry), cp.Props.SessionExpiry)
	}
}

// TestBridgeLocalSideTrusted: the bridge's side in the local broker is the
// broker's own, as in mosquitto: it is not refused by allow_anonymous false
// nor checked against the password file, and without local_username the
// ACL file does not restrict it either (here it gives anonymous clients
// nothing). What it brings in reaches a local subscriber.
func TestBridgeLocalSideTrusted(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	mosquittoPasswd(t, pw, true, "reader", "r")
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, "user reader\ntopic read in/#\n")
	remote := newNode(t, "remote", "", true)
	local := newNode(t, "local", "", false)
	writeFile(t, local.conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\nuser root\npassword_file %s\nacl_file %s\n"+
		"connection ab\naddress %s\nnotifications false\nrestart_timeout 1\ntopic in/# in 1\n", local.port, pw, acl, remote.addr))
	local.start()
	local.waitLog("Bridge ab connected", 10*time.Second) // anonymous clients cannot read its state

	sub := dialMQ(t, local.addr, codec.Version311)
	cp := sub.connectPacket("reader")
	cp.Connect.Username, cp.Connect.UsernameFlag = []byte("reader"), true
	cp.Connect.Password, cp.Connect.PasswordFlag = []byte("r"), true
	if ack := sub.connect(cp); ack.ReasonCode != 0 {
		t.Fatalf("reader: CONNACK %d", ack.ReasonCode)
	}
	sub.subscribe(1, "in/#", 1)
	publish(t, remote.publisher("rp"), "in/x", "brought in", 1, false)
	p := sub.expect(codec.PUBLISH)
	if string(p.Topic) != "in/x" || string(p.Payload) != "brought in" {
		t.Fatalf("got %q %q", p.Topic, p.Payload)
	}
}

// TestPerListenerDefaultListenerAnonymous: under per_listener_settings, the
// default listener (`port`) lets anonymous clients in when nothing there
// checks clients, as mosquitto 2.0.11 does; another listener does not, and
// neither does the default one with a password file.
func TestPerListenerDefaultListenerAnonymous(t *testing.T) {
	other := freePort(t)
	addr, _ := startConf(t, fmt.Sprintf("per_listener_settings true\nuser root\nport {port}\nlistener %d 127.0.0.1\n", other))
	m := dialMQ(t, addr, codec.Version311)
	if ack := m.connect(m.connectPacket("anon")); ack.ReasonCode != 0 {
		t.Fatalf("default listener: CONNACK %d, want 0", ack.ReasonCode)
	}
	o := dialMQ(t, fmt.Sprintf("127.0.0.1:%d", other), codec.Version311)
	if ack := o.connect(o.connectPacket("anon")); ack.ReasonCode != codec.ConnRefusedNotAuthorized {
		t.Fatalf("listener %d: CONNACK %d, want 5", other, ack.ReasonCode)
	}

	pw := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, pw, "")
	addr, _ = startConf(t, fmt.Sprintf("per_listener_settings true\nuser root\nport {port}\npassword_file %s\n", pw))
	m = dialMQ(t, addr, codec.Version311)
	if ack := m.connect(m.connectPacket("anon")); ack.ReasonCode != codec.ConnRefusedNotAuthorized {
		t.Fatalf("default listener with a password file: CONNACK %d, want 5", ack.ReasonCode)
	}
}

// TestBridgeQoS0WhileConnecting: from the moment the bridge's connection to
// its remote is up until the local side is online (after the CONNACK), a
// QoS 0 message for the remote is kept, as mosquitto keeps it once its
// bridge's socket is up, and sent after the CONNACK. (Before, the local
// session was offline until then and dropped it.)
func TestBridgeQoS0WhileConnecting(t *testing.T) {
	r := newRemoteScript(t, codec.Version311)
	local := newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nnotifications false\ntry_private false\n"+
		"bridge_attempt_unsubscribe false\ntopic b/# out 0\n", r.ln.Addr()), true)
	_ = r.ln.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	conn, err := r.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := &mq{t: t, c: conn}
	m.dec.Version = codec.Version311
	m.expect(codec.CONNECT) // connected, not yet answered

	pub := dialMQ(t, local.addr, codec.Version311)
	pub.connectOK("pub")
	pub.publish("b/x", "while connecting", 0, 0, false)
	pub.send(&codec.Packet{Type: codec.PINGREQ})
	pub.expect(codec.PINGRESP) // the PUBLISH before it has been handled

	m.send(&codec.Packet{Type: codec.CONNACK})
	p := m.expect(codec.PUBLISH)
	if string(p.Topic) != "b/x" || string(p.Payload) != "while connecting" {
		t.Fatalf("got %q %q", p.Topic, p.Payload)
	}
}
