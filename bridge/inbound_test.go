package bridge

import (
	"fmt"
	"log"
	"net"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// rawRemote is a 3.1.1 server that answers CONNECT with its CONNACK and, in
// the same write, a QoS 1 PUBLISH on in/x (what a resumed session had
// queued), answers SUBSCRIBE, and reports the packet types it reads.
func rawRemote(t *testing.T) (addr string, got <-chan codec.PacketType) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan codec.PacketType, 64)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		dec := codec.Decoder{Version: codec.Version311}
		var p, q codec.Packet
		var buf []byte
		rd := make([]byte, 4096)
		for {
			n, err := conn.Read(rd)
			if err != nil {
				return
			}
			buf = append(buf, rd[:n]...)
			for {
				used, err := dec.Decode(buf, &p)
				if err != nil {
					break
				}
				var out []byte
				switch p.Type {
				case codec.CONNECT:
					q.Reset()
					q.Type = codec.CONNACK
					out = q.Encode(out, codec.Version311)
					q.Reset()
					q.Type, q.QoS, q.PacketID, q.Topic, q.Payload = codec.PUBLISH, 1, 7, []byte("in/x"), []byte("queued")
					out = q.Encode(out, codec.Version311)
				case codec.SUBSCRIBE:
					q.Reset()
					q.Type, q.PacketID, q.ReasonCodes = codec.SUBACK, p.PacketID, []byte{1}
					out = q.Encode(out, codec.Version311)
				}
				ch <- p.Type
				buf = buf[used:]
				if len(out) > 0 {
					conn.Write(out)
				}
			}
		}
	}()
	return ln.Addr().String(), ch
}

// TestInboundWaitsForLocal: a remote resuming the bridge's session sends
// what it queued right after CONNACK, before the bridge's local side is
// online. The message is acknowledged to the remote only once the local
// broker has it [MQTT-4.3.2-2]; it used to be dropped and acknowledged,
// so lost.
func TestInboundWaitsForLocal(t *testing.T) {
	b := session.NewBroker(session.DefaultOptions())
	sub := newLocal(b, "sub")
	if err := sub.connect("sub", "", "", false, false, true, 0, 100, false); err != nil {
		t.Fatal(err)
	}
	if err := sub.subscribe([]string{"in/#"}, []byte{1}, 0); err != nil {
		t.Fatal(err)
	}
	addr, got := rawRemote(t)
	cfg := parseBridge(t, fmt.Sprintf("connection a\naddress %s\ncleansession false\nnotifications false\n"+
		"bridge_attempt_unsubscribe false\ntopic in/# in 1\n", addr))
	br := New(cfg, b, log.New(testWriter{t}, "", 0))
	rc, err := br.dial(0) // as session does, before serve brings the local side online
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if typ := <-got; typ != codec.CONNECT {
		t.Fatalf("first packet %v", typ)
	}
	select {
	case typ := <-got:
		t.Fatalf("%v sent while the local side was offline", typ)
	case <-time.After(300 * time.Millisecond):
	}
	served := make(chan error, 1)
	go func() { served <- br.serve(rc) }()
	defer func() {
		close(br.stop)
		br.cancel()
		<-served // its error is the stop's
	}()
	deadline := time.After(10 * time.Second)
	for acked := false; !acked; {
		select {
		case typ := <-got:
			acked = typ == codec.PUBACK
		case <-deadline:
			t.Fatal("no PUBACK once the local side was online")
		}
	}
	for {
		out, _, err := sub.drain(64 << 10)
		if err != nil {
			t.Fatal(err)
		}
		var p codec.Packet
		dec := codec.Decoder{Version: codec.Version5}
		if len(out) > 0 {
			if _, err := dec.Decode(out, &p); err != nil || p.Type != codec.PUBLISH || string(p.Payload) != "queued" {
				t.Fatalf("subscriber got %v %q (%v)", p.Type, p.Payload, err)
			}
			return
		}
		select {
		case <-sub.wake:
		case <-deadline:
			t.Fatal("the subscriber never got the message")
		}
	}
}
