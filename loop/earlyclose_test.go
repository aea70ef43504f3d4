package loop

import (
	"math/rand"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// TestMalformedFirstByte: 4 KiB of random bytes that begin with 0x00
// (packet type 0 is reserved [MQTT-2.1.2]) and a remaining length that
// claims 256 MiB close the connection at once, before, after a 3.1.1
// CONNECT, and after a 5.0 one with DISCONNECT 0x81 [MQTT-4.13.1-1]; the
// broker does not wait for a body that will never come. The CONNECT timeout
// is a minute, so only the early close can pass.
func TestMalformedFirstByte(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil, func(c *Config) { c.ConnectTimeout = time.Minute })
	obs := tb.observer(t)
	junk := make([]byte, 4096)
	rand.New(rand.NewSource(20)).Read(junk)
	junk[0] = 0x00
	copy(junk[1:], []byte{0xff, 0xff, 0xff, 0x7f})
	for i, tc := range []struct {
		name    string
		version byte // 0: no CONNECT first
	}{{"BeforeConnect", 0}, {"Mqtt311", codec.Version311}, {"Mqtt5", codec.Version5}} {
		t.Run(tc.name, func(t *testing.T) {
			r := tb.raw(t, tc.version)
			if tc.version != 0 {
				if ack := r.connect(connectPacket(tc.version, "", true)); ack.ReasonCode != 0 {
					t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
				}
			}
			began := time.Now()
			r.write(junk)
			if tc.version == codec.Version5 {
				r.expectDisconnect(codec.MalformedPacket)
			}
			r.expectClosed()
			t.Logf("closed %v after the bytes were written", time.Since(began).Round(time.Microsecond))
			obs.check(t, uint16(i+1))
		})
	}
}

// TestServerVectorsEarly sends each of the codec's ServerVectors, whose
// bodies never come in full (a first packet other than CONNECT
// [MQTT-3.1.0-1], a second CONNECT [MQTT-3.1.0-2], a reserved type or
// flags [MQTT-2.1.3-1], QoS 3 [MQTT-3.3.1-4], a packet only a server sends,
// a CONNECT over its size bound or over max_packet_size), and sees the
// connection closed (a v5 one after DISCONNECT with the vector's reason)
// without waiting.
func TestServerVectorsEarly(t *testing.T) {
	t.Parallel()
	brokers := map[int]*testBroker{}
	for i, v := range codec.ServerVectors {
		tb := brokers[v.MaxPacketSize]
		if tb == nil {
			tb = startBroker(t, nil, func(c *Config) { c.ConnectTimeout, c.MaxPacketSize = time.Minute, v.MaxPacketSize })
			brokers[v.MaxPacketSize] = tb
		}
		t.Run(v.Name, func(t *testing.T) {
			r := tb.raw(t, v.Version)
			if v.Connected {
				if ack := r.connect(connectPacket(v.Version, "", true)); ack.ReasonCode != 0 {
					t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
				}
			}
			r.write(v.Raw)
			if v.Connected && v.Version == codec.Version5 {
				r.expectDisconnect(v.Reason)
			}
			r.expectClosed()
			if i%4 == 0 { // the broker still serves others
				obs := tb.observer(t)
				obs.check(t, uint16(i+1))
				obs.r.c.Close()
			}
		})
	}
}
