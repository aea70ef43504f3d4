package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/midge-mqtt/midge/codec"
)

// TestPublishV5WildcardTopic: a PUBLISH whose topic name holds a wildcard
// breaks [MQTT-3.3.2-2]; a v5 client is told so with DISCONNECT 0x82
// (protocol error), as mosquitto does (its 13-malformed-publish-v5), then
// closed.
func TestPublishV5WildcardTopic(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\n")
	for _, topic := range []string{"#/test/topic", "a/+"} {
		m := dialMQ(t, addr, codec.Version5)
		m.connectOK("wild")
		m.publish(topic, "x", 1, 1, false)
		m.expectDisconnect(codec.ProtocolError)
	}
}

// TestPublishQoS2ThirdCopy: a QoS 2 message may be sent again only on a new
// connection [MQTT-4.4.0-1]. Its PUBREC is repeated for a second copy on
// the same connection, without routing it twice [MQTT-4.3.3-10]; a third
// copy before the PUBREL is a protocol error (v5: DISCONNECT 0x82), as
// mosquitto has it (its 03-publish-qos2-dup). A copy on the next connection
// is normal recovery and is answered again; a second copy there is the
// protocol error.
func TestPublishQoS2ThirdCopy(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\n")
	for _, v := range []byte{codec.Version311, codec.Version5} {
		m := dialMQ(t, addr, v)
		cp := m.connectPacket(fmt.Sprint("q2dup-v", v))
		cp.Connect.CleanStart = false
		if v == codec.Version5 {
			cp.Props.SessionExpiry = 60
			cp.Props.Set(codec.PropSessionExpiry)
		}
		m.connect(cp)
		send := func(m *mq) {
			p := &codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 1, Dup: true, Topic: []byte("t"), Payload: []byte("m")}
			m.send(p)
		}
		for i := 0; i < 2; i++ {
			send(m)
			if p := m.expect(codec.PUBREC); p.PacketID != 1 {
				t.Fatalf("v%d copy %d: PUBREC %d", v, i+1, p.PacketID)
			}
		}
		m.c.Close() // the next connection may send it again
		m = dialMQ(t, addr, v)
		m.connect(cp)
		send(m)
		m.expect(codec.PUBREC)
		send(m) // a second copy on this connection
		if v == codec.Version5 {
			m.expectDisconnect(codec.ProtocolError)
		} else {
			m.expectClosed()
		}
	}
}

// TestPersistPacketIDsGoOn: with persistence, the packet ids the broker
// gives a persistent session's messages go on after a restart from the last
// one used, as mosquitto's do (its 11-persistent-subscription-no-local),
// rather than starting again from 1.
func TestPersistPacketIDsGoOn(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	addr := "127.0.0.1:" + itoa(port)
	path := dir + "/midge.conf"
	writeFile(t, path, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\npersistence_location %s\n", port, dir))
	connect := func() *mq {
		m := dialMQ(t, addr, codec.Version5)
		cp := m.connectPacket("ids")
		cp.Connect.CleanStart = false
		cp.Props.SessionExpiry = 60
		cp.Props.Set(codec.PropSessionExpiry)
		m.connect(cp)
		return m
	}
	receive := func(m *mq) uint16 { // a message it publishes to itself
		m.publish("ids/t", "x", 1, 7, false)
		var id uint16
		for i := 0; i < 2; i++ {
			p, err := m.next(mqWait)
			if err != nil {
				t.Fatal(err)
			}
			if p.Type == codec.PUBLISH {
				id = p.PacketID
				m.send(&codec.Packet{Type: codec.PUBACK, PacketID: id})
			}
		}
		return id
	}
	cmd, _ := startMidge(t, addr, "-c", path)
	m := connect()
	m.subscribe(1, "ids/#", 1)
	first := receive(m)
	// The PUBACK is in once the PINGREQ sent after it is answered: the
	// broker handles a connection's packets in order (a fixed sleep raced
	// the restart on a loaded machine, and the message came again, resent).
	m.send(&codec.Packet{Type: codec.PINGREQ})
	m.expect(codec.PINGRESP)
	stopProcess(cmd, sigterm)
	startMidge(t, addr, "-c", path)
	m = connect()
	if next := receive(m); next != first+1 {
		t.Fatalf("packet id %d after the restart, want %d (the one before was %d)", next, first+1, first)
	}
}

// TestSighupReloadACLQueuedIDs: a queued QoS 1 message that a SIGHUP's ACL
// no longer lets its subscriber read is dropped when the client comes back,
// and it has used its packet id, as mosquitto numbers a message when it
// queues it: the next message gets the id after it (mosquitto's
// 09-acl-change; the ids need only be unique [MQTT-2.2.1-3], the same ones
// let byte-for-byte tests pass).
func TestSighupReloadACLQueuedIDs(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	addr := "127.0.0.1:" + itoa(port)
	acl := dir + "/acl"
	writeFile(t, acl, "topic readwrite ids/one\ntopic readwrite ids/two\n")
	path := dir + "/midge.conf"
	writeFile(t, path, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nuser root\nacl_file %s\n", port, acl))
	cmd, logs := startMidge(t, addr, "-c", path)
	connect := func() *mq {
		m := dialMQ(t, addr, codec.Version311)
		cp := m.connectPacket("aclids")
		cp.Connect.CleanStart = false
		m.connect(cp)
		return m
	}
	m := connect()
	m.subscribe(1, "ids/one", 1)
	m.subscribe(2, "ids/two", 1)
	m.send(&codec.Packet{Type: codec.DISCONNECT})
	m.expectClosed()

	h := dialMQ(t, addr, codec.Version311)
	h.connectOK("aclids-helper")
	h.publish("ids/one", "m1", 1, 1, false)
	h.expect(codec.PUBACK)
	h.publish("ids/two", "m2", 1, 2, false)
	h.expect(codec.PUBACK)

	writeFile(t, acl, "topic readwrite ids/one\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "Reloading config.") })

	m = connect()
	p := m.expect(codec.PUBLISH)
	if string(p.Payload) != "m1" || p.PacketID != 1 {
		t.Fatalf("PUBLISH %q id %d, want m1 id 1", p.Payload, p.PacketID)
	}
	m.send(&codec.Packet{Type: codec.PUBACK, PacketID: 1})
	h.publish("ids/one", "m3", 1, 3, false)
	h.expect(codec.PUBACK)
	p = m.expect(codec.PUBLISH)
	if string(p.Payload) != "m3" || p.PacketID != 3 {
		t.Fatalf("PUBLISH %q id %d, want m3 id 3 (2 went with the dropped m2)", p.Payload, p.PacketID)
	}
}
