package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// Tests of mosquitto.conf keys that change the broker's rules, each through
// the broker binary and a raw client on a real socket.

// TestConfMaxQoS: max_qos 1 on a listener, as mosquitto 2.0.11 does it: v5
// clients are told in CONNACK [MQTT-3.2.2-9]; a will QoS above it is
// refused with 0x9B [MQTT-3.2.2-12] (a v3 client is closed with no CONNACK);
// a subscription is granted at 1; a QoS 2 PUBLISH disconnects (v5 0x9B).
func TestConfMaxQoS(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nmax_qos 1\n")

	m := dialMQ(t, addr, codec.Version5)
	ack := m.connect(m.connectPacket("q5"))
	if ack.ReasonCode != 0 || !ack.Props.Has(codec.PropMaximumQoS) || ack.Props.MaximumQoS != 1 {
		t.Fatalf("CONNACK 0x%02x, Maximum QoS present %v = %d", ack.ReasonCode, ack.Props.Has(codec.PropMaximumQoS), ack.Props.MaximumQoS)
	}
	if sa := m.subscribe(1, "a/#", 2); len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK %v, want granted QoS 1", sa.ReasonCodes)
	}
	m.publish("a/b", "x", 2, 7, false)
	m.expectDisconnect(codec.QoSNotSupported)

	w := dialMQ(t, addr, codec.Version5)
	p := w.connectPacket("w5")
	p.Connect.WillFlag, p.Connect.WillQoS = true, 2
	p.Connect.WillTopic, p.Connect.WillPayload = []byte("w"), []byte("bye")
	if ack := w.connect(p); ack.ReasonCode != codec.QoSNotSupported || ack.Props.MaximumQoS != 1 {
		t.Fatalf("will QoS 2: CONNACK 0x%02x, Maximum QoS %d", ack.ReasonCode, ack.Props.MaximumQoS)
	}

	w3 := dialMQ(t, addr, codec.Version311)
	p = w3.connectPacket("w3")
	p.Connect.WillFlag, p.Connect.WillQoS = true, 2
	p.Connect.WillTopic, p.Connect.WillPayload = []byte("w"), []byte("bye")
	w3.send(p)
	w3.expectClosed()

	v3 := dialMQ(t, addr, codec.Version311)
	v3.connectOK("p3")
	if sa := v3.subscribe(1, "a/#", 2); sa.ReasonCodes[0] != 1 {
		t.Fatalf("v3 SUBACK %v, want 1", sa.ReasonCodes)
	}
	v3.publish("a/b", "x", 2, 7, false)
	v3.expectClosed()
}

// TestConfMountPoint: a listener's mount_point prefixes what its clients
// publish and subscribe to, and is removed from what they receive; they see
// nothing outside it. A client of another listener sees the full topics.
func TestConfMountPoint(t *testing.T) {
	port2 := freePort(t)
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\n"+
		"listener "+itoa(port2)+" 127.0.0.1\nallow_anonymous true\nmount_point tenant/\n")
	mounted := "127.0.0.1:" + itoa(port2)

	outside := dialMQ(t, addr, codec.Version311)
	outside.connectOK("outside")
	outside.subscribe(1, "#", 0)

	in := dialMQ(t, mounted, codec.Version5)
	in.connectOK("inside")
	in.subscribe(1, "#", 0)
	in.subscribe(2, "$share/g/s/+", 0)

	in.publish("x", "1", 0, 0, false)
	if p := outside.expect(codec.PUBLISH); string(p.Topic) != "tenant/x" {
		t.Fatalf("outside got %q, want tenant/x", p.Topic)
	}
	if p := in.expect(codec.PUBLISH); string(p.Topic) != "x" {
		t.Fatalf("inside got its own message as %q, want x", p.Topic)
	}
	outside.publish("tenant/y", "2", 0, 0, false)
	if p := in.expect(codec.PUBLISH); string(p.Topic) != "y" {
		t.Fatalf("inside got %q, want y", p.Topic)
	}
	outside.expect(codec.PUBLISH)
	outside.publish("tenant/s/1", "3", 0, 0, false) // the shared subscription, mounted too
	outside.expect(codec.PUBLISH)
	for i := 0; i < 2; i++ { // "#" and the shared subscription (two subscriptions, two copies)
		if p := in.expect(codec.PUBLISH); string(p.Topic) != "s/1" {
			t.Fatalf("inside got %q, want s/1", p.Topic)
		}
	}
	outside.publish("other", "4", 0, 0, false)
	outside.expect(codec.PUBLISH)
	in.expectQuiet()
}

// TestConfUsernameAsClientID: the username replaces the client id, so a
// second connection with the same username takes the first one's session
// over; a client without a username is refused as not authorised.
func TestConfUsernameAsClientID(t *testing.T) {
	addr, out := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nuse_username_as_clientid true\n")
	login := func(m *mq, id string) {
		p := m.connectPacket(id)
		p.Connect.Username, p.Connect.UsernameFlag = []byte("bob"), true
		if ack := m.connect(p); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
		}
	}
	a := dialMQ(t, addr, codec.Version5)
	login(a, "first")
	b := dialMQ(t, addr, codec.Version5)
	login(b, "second")
	a.expectDisconnect(codec.SessionTakenOver)
	waitFor(t, func() bool { return strings.Contains(out.String(), "as bob (p5") })

	n := dialMQ(t, addr, codec.Version311)
	if ack := n.connect(n.connectPacket("anon")); ack.ReasonCode != codec.ConnRefusedNotAuthorized {
		t.Fatalf("no username: CONNACK 0x%02x, want 0x05", ack.ReasonCode)
	}
}

// TestConfClientIDPrefixes: only client ids with the prefix may connect.
func TestConfClientIDPrefixes(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nclientid_prefixes secure-\n")
	ok := dialMQ(t, addr, codec.Version311)
	ok.connectOK("secure-client")
	bad := dialMQ(t, addr, codec.Version311)
	if ack := bad.connect(bad.connectPacket("mqtt")); ack.ReasonCode != codec.ConnRefusedNotAuthorized {
		t.Fatalf("CONNACK 0x%02x, want 0x05", ack.ReasonCode)
	}
}

// TestConfUpgradeOutgoingQoS: with upgrade_outgoing_qos a message goes out
// at the subscription's QoS, above the publisher's (against
// [MQTT-3.8.4-8], as the option says); without it, at the lower of the two.
func TestConfUpgradeOutgoingQoS(t *testing.T) {
	for _, upgrade := range []bool{false, true} {
		conf := "listener {port} 127.0.0.1\nallow_anonymous true\n"
		want := byte(0)
		if upgrade {
			conf += "upgrade_outgoing_qos true\n"
			want = 1
		}
		addr, _ := startConf(t, conf)
		sub := dialMQ(t, addr, codec.Version311)
		sub.connectOK("sub")
		sub.subscribe(1, "t", 1)
		pub := dialMQ(t, addr, codec.Version311)
		pub.connectOK("pub")
		pub.publish("t", "m", 0, 0, false)
		if p := sub.expect(codec.PUBLISH); p.QoS != want {
			t.Fatalf("upgrade %v: delivered at QoS %d, want %d", upgrade, p.QoS, want)
		}
	}
}

// TestConfMaxInflightBytes: outgoing QoS 1 messages are held once their
// payloads in flight would pass max_inflight_bytes; one is always allowed.
func TestConfMaxInflightBytes(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_bytes 10\n")
	sub := dialMQ(t, addr, codec.Version311)
	sub.connectOK("sub")
	sub.subscribe(1, "t", 1)
	pub := dialMQ(t, addr, codec.Version311)
	pub.connectOK("pub")
	for i, pl := range []string{"12345678", "12", "123456789012"} {
		pub.publish("t", pl, 1, uint16(i+1), false)
		pub.expect(codec.PUBACK)
	}
	first := sub.expect(codec.PUBLISH)
	second := sub.expect(codec.PUBLISH) // 8 + 2 bytes: within 10
	if string(first.Payload) != "12345678" || string(second.Payload) != "12" {
		t.Fatalf("got %q, %q", first.Payload, second.Payload)
	}
	sub.expectQuiet() // 10 + 12 > 10: held
	sub.send(&codec.Packet{Type: codec.PUBACK, PacketID: first.PacketID})
	sub.expectQuiet() // 2 + 12 > 10: still held
	sub.send(&codec.Packet{Type: codec.PUBACK, PacketID: second.PacketID})
	if p := sub.expect(codec.PUBLISH); string(p.Payload) != "123456789012" {
		t.Fatalf("third: %q", p.Payload) // alone in flight, though over the limit
	}
}

// TestConfCheckRetainSource: a retained message is not sent to a new
// subscriber once its publisher has lost write access to its topic (ACL
// file changed, SIGHUP), unless check_retain_source is false.
func TestConfCheckRetainSource(t *testing.T) {
	for _, check := range []bool{true, false} {
		dir := t.TempDir()
		acl := filepath.Join(dir, "acl")
		writeFile(t, acl, "user alice\ntopic write r/#\nuser bob\ntopic read r/#\n")
		conf := "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\nacl_file " + acl + "\n"
		if !check {
			conf += "check_retain_source false\n"
		}
		port := freePort(t)
		addr := "127.0.0.1:" + itoa(port)
		path := filepath.Join(dir, "midge.conf")
		writeFile(t, path, strings.ReplaceAll(conf, "{port}", itoa(port)))
		cmd, out := startMidge(t, addr, "-c", path)

		user := func(name string) *mq {
			m := dialMQ(t, addr, codec.Version311)
			p := m.connectPacket(name)
			p.Connect.Username, p.Connect.UsernameFlag = []byte(name), true
			if ack := m.connect(p); ack.ReasonCode != 0 {
				t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
			}
			return m
		}
		alice := user("alice")
		alice.publish("r/1", "kept", 1, 1, true)
		alice.expect(codec.PUBACK)
		bob := user("bob")
		bob.subscribe(1, "r/#", 0)
		bob.expect(codec.PUBLISH) // alice may still publish it

		writeFile(t, acl, "user bob\ntopic read r/#\n")
		before := strings.Count(out.String(), "Reloading config.")
		_ = cmd.Process.Signal(sighup)
		waitFor(t, func() bool { return strings.Count(out.String(), "Reloading config.") > before })
		time.Sleep(100 * time.Millisecond) // the reload follows its log line

		late := user("bob")
		late.subscribe(1, "r/#", 0)
		if check {
			late.expectQuiet()
		} else if p := late.expect(codec.PUBLISH); string(p.Payload) != "kept" {
			t.Fatalf("got %q", p.Payload)
		}
	}
}

// TestConfQueueQoS0: with queue_qos0_messages an offline persistent session
// keeps QoS 0 messages for its return.
func TestConfQueueQoS0(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nqueue_qos0_messages true\n")
	sub := dialMQ(t, addr, codec.Version311)
	p := sub.connectPacket("keeper")
	p.Connect.CleanStart = false
	sub.connect(p)
	sub.subscribe(1, "q", 0)
	sub.c.Close()
	pub := dialMQ(t, addr, codec.Version311)
	pub.connectOK("pub")
	pub.publish("q", "while away", 0, 0, false)
	pub.send(&codec.Packet{Type: codec.PINGREQ})
	pub.expect(codec.PINGRESP)
	time.Sleep(100 * time.Millisecond)

	back := dialMQ(t, addr, codec.Version311)
	p = back.connectPacket("keeper")
	p.Connect.CleanStart = false
	if ack := back.connect(p); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	if m := back.expect(codec.PUBLISH); string(m.Payload) != "while away" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestConfMemoryLimit: past memory_limit an inbound PUBLISH is dropped and
// its client disconnected (v5: 0x97); under it, publishing works.
func TestConfMemoryLimit(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nmemory_limit 4096\n")
	m := dialMQ(t, addr, codec.Version5)
	m.connectOK("heavy")
	m.publish("t", "x", 1, 1, false)
	m.expectDisconnect(codec.QuotaExceeded)

	addr, _ = startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nmemory_limit 4294967296\n")
	m = dialMQ(t, addr, codec.Version5)
	m.connectOK("light")
	m.publish("t", "x", 1, 1, false)
	m.expect(codec.PUBACK)
}

// TestConfPidFile: pid_file holds the broker's pid while it runs and is
// removed when it stops.
func TestConfPidFile(t *testing.T) {
	dir := t.TempDir()
	pid := filepath.Join(dir, "midge.pid")
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	// user root: the directory is root's (TestConfUser drops privileges).
	writeFile(t, conf, "listener "+itoa(port)+" 127.0.0.1\npid_file "+pid+"\nuser root\n")
	cmd, _ := startMidge(t, "127.0.0.1:"+itoa(port), "-c", conf)
	b, err := os.ReadFile(pid)
	if err != nil || strings.TrimSpace(string(b)) != itoa(cmd.Process.Pid) {
		t.Fatalf("pid file %q (%v), want %d", b, err, cmd.Process.Pid)
	}
	if !stopProcess(cmd, sigterm) {
		t.Fatal("midge did not stop")
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Fatalf("pid file left after stop: %v", err)
	}
}

// TestConfMaximumQoSAlias: mosquitto reads `maximum_qos` as `max_qos` (its
// own tests use that spelling): a v5 client is told Maximum QoS 1 in the
// CONNACK [MQTT-3.2.2-9].
func TestConfMaximumQoSAlias(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nmaximum_qos 1\n")
	m := dialMQ(t, addr, codec.Version5)
	ack := m.connect(m.connectPacket("mq"))
	if ack.ReasonCode != 0 || !ack.Props.Has(codec.PropMaximumQoS) || ack.Props.MaximumQoS != 1 {
		t.Fatalf("CONNACK 0x%02x, maximum QoS %v %d", ack.ReasonCode, ack.Props.Has(codec.PropMaximumQoS), ack.Props.MaximumQoS)
	}
}

// TestConfCheckRetainSourceAfterRestart: with persistence, the publisher of
// a retained message (its client id, username and listener) is stored with
// it, so that check_retain_source still applies after a restart, under the
// ACLs of the listener it published on (per_listener_settings), whichever
// listener the subscriber comes in on (CVE-2018-12546; mosquitto's
// 04-retain-check-source-persist*).
func TestConfCheckRetainSourceAfterRestart(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, "topic readwrite r/#\n")
	pa, pb := freePort(t), freePort(t)
	path := filepath.Join(dir, "midge.conf")
	writeFile(t, path, fmt.Sprintf("per_listener_settings true\npersistence true\npersistence_location %s\nuser root\n"+
		"listener %d 127.0.0.1\nallow_anonymous true\nacl_file %s\nlistener %d 127.0.0.1\nallow_anonymous true\n", dir, pa, acl, pb))
	addrA, addrB := "127.0.0.1:"+itoa(pa), "127.0.0.1:"+itoa(pb)
	retained := func() *codec.Packet { // what a new subscriber on listener B gets
		m := dialMQ(t, addrB, codec.Version311)
		m.connectOK("sub")
		m.subscribe(1, "r/#", 0)
		p, err := m.next(500 * time.Millisecond)
		if err != nil {
			return nil
		}
		return p
	}

	cmd, _ := startMidge(t, addrA, "-c", path)
	pub := dialMQ(t, addrA, codec.Version311)
	pub.connectOK("pub")
	pub.publish("r/1", "kept", 1, 1, true)
	pub.expect(codec.PUBACK)
	if p := retained(); p == nil || string(p.Payload) != "kept" {
		t.Fatalf("before the restart: %v", p)
	}

	stopProcess(cmd, sigterm)
	cmd, _ = startMidge(t, addrA, "-c", path)
	if p := retained(); p == nil || string(p.Payload) != "kept" {
		t.Fatalf("after a restart, the ACL unchanged: %v", p)
	}

	stopProcess(cmd, sigterm)
	writeFile(t, acl, "topic read r/#\n") // its publisher may no longer write it
	startMidge(t, addrA, "-c", path)
	if p := retained(); p != nil {
		t.Fatalf("after a restart, the publisher's write access gone: got %v %q", p.Type, p.Payload)
	}
}
