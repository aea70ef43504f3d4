package main

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// scriptedRemote is a bridge's remote broker played by the test: a listener
// that takes the bridge's connections, and a persisting local midge whose
// bridge brings in/# in at qos, with an offline persistent subscriber
// (subID) to in/#.
type scriptedRemote struct {
	t     *testing.T
	ln    net.Listener
	local *node
}

func newScriptedRemote(t *testing.T, qos byte, subID string) *scriptedRemote {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	local := newNode(t, "local", fmt.Sprintf("persistence true\npersistence_location %s\n"+
		"connection ab\naddress %s\nbridge_protocol_version mqttv311\ntry_private false\nnotifications false\n"+
		"cleansession false\nrestart_timeout 1\ntopic in/# in %d\n", t.TempDir(), ln.Addr(), qos), true)
	sub := pahoClient(t, local.addr, subID, false, nil)
	waitToken(t, sub.Subscribe("in/#", 2, nil), "subscribe")
	sub.Disconnect(100)
	return &scriptedRemote{t: t, ln: ln, local: local}
}

// accept takes the bridge's next connection and answers its CONNECT.
func (r *scriptedRemote) accept(present bool) *mq {
	r.t.Helper()
	m, _ := acceptBridge(r.t, r.ln, codec.Version311, present)
	return m
}

// acceptBridge takes a bridge's next connection on ln and answers its
// CONNECT with a CONNACK (session present as given).
func acceptBridge(t *testing.T, ln net.Listener, version byte, present bool) (*mq, *codec.Packet) {
	t.Helper()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("the bridge did not connect: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	m := &mq{t: t, c: conn}
	m.dec.Version = version
	cp := m.expect(codec.CONNECT)
	m.send(&codec.Packet{Type: codec.CONNACK, SessionPresent: present})
	return m, cp
}

// await reads until a packet of type want with id comes, answering the
// bridge's SUBSCRIBEs meanwhile.
func await(m *mq, want codec.PacketType, id uint16) {
	for {
		p, err := m.next(mqWait)
		if err != nil {
			m.t.Fatalf("waiting for %v %d: %v", want, id, err)
		}
		if p.Type == codec.SUBSCRIBE {
			m.send(&codec.Packet{Type: codec.SUBACK, PacketID: p.PacketID, ReasonCodes: []byte{2}})
			continue
		}
		if p.Type == want && p.PacketID == id {
			return
		}
	}
}

// crash kills the local broker and starts it again.
func (r *scriptedRemote) crash() {
	r.local.stop(syscall.SIGKILL)
	r.local.start()
}

// received is what the persistent subscriber subID gets once back.
func (r *scriptedRemote) received(subID string) []string {
	col := &collector{}
	sub := pahoClient(r.t, r.local.addr, subID, false, col.handle)
	defer sub.Disconnect(100)
	return col.quietFor(time.Second)
}

// TestBridgeInboundAckedOnceStored: a message a bridge brings in from its
// remote is acknowledged to the remote only once the local broker has
// stored it (persistence_sync always): the remote then forgets it
// [MQTT-4.3.2-3], so a crash of the local broker right after the PUBACK
// must not lose it. The remote is scripted: it sends one QoS 1 PUBLISH per
// bridge connection and kills the local broker the moment the PUBACK (QoS 2:
// PUBREC, [MQTT-4.3.3-9]) comes; an offline persistent subscriber on the
// local broker must get every one.
func TestBridgeInboundAckedOnceStored(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			r := newScriptedRemote(t, qos, "durable-sub")
			const rounds = 6
			ack := map[byte]codec.PacketType{1: codec.PUBACK, 2: codec.PUBREC}[qos]
			for i := 0; i < rounds; i++ {
				m := r.accept(false)
				m.publish("in/x", fmt.Sprint("m", i), qos, uint16(100+i), false)
				await(m, ack, uint16(100+i))
				r.crash() // the moment the remote has let go of it
			}
			got := map[string]bool{}
			for _, s := range r.received("durable-sub") {
				got[s] = true
			}
			for i := 0; i < rounds; i++ {
				if want := fmt.Sprintf("in/x m%d %d", i, qos); !got[want] {
					t.Errorf("lost %q (got %v)", want, got)
				}
			}
		})
	}
}

// TestBridgeInboundQoS2ResendAfterCrash: a QoS 2 message the bridge brought
// in keeps the remote's packet id in the local session until the remote
// releases it, so when the local broker crashes after storing it and the
// remote (its PUBREC lost) sends it again with DUP on the next connection,
// it is recognised and not delivered twice [MQTT-4.3.3-10]; the remote's
// PUBREL then ends the flow on both sides, and the id is free for the next
// message [MQTT-4.3.3-12].
func TestBridgeInboundQoS2ResendAfterCrash(t *testing.T) {
	r := newScriptedRemote(t, 2, "resend-sub")
	flow := func(m *mq, id uint16) {
		await(m, codec.PUBREC, id)
		m.send(&codec.Packet{Type: codec.PUBREL, PacketID: id, Flags: 2})
		await(m, codec.PUBCOMP, id)
	}
	m := r.accept(false)
	m.publish("in/x", "zero", 2, 3, false) // a whole flow first
	flow(m, 3)
	m.publish("in/x", "once", 2, 7, false)
	await(m, codec.PUBREC, 7)
	r.crash() // stored; say the remote never got that PUBREC

	m = r.accept(true)
	m.send(&codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 7, Dup: true, Topic: []byte("in/x"), Payload: []byte("once")})
	flow(m, 7)
	m.publish("in/x", "again", 2, 7, false) // id 7 is free again
	flow(m, 7)

	if got := r.received("resend-sub"); len(got) != 3 || got[0] != "in/x zero 2" || got[1] != "in/x once 2" || got[2] != "in/x again 2" {
		t.Errorf("the subscriber got %q, want zero, once and again, each once", got)
	}
}
