package codec

import (
	"bytes"
	"testing"
)

// benchPublish is a PUBLISH QoS 1 with a payload of size bytes; at 5.0 it
// carries a message expiry, a content type and two user properties.
func benchPublish(version byte, size int) *Packet {
	p := &Packet{Type: PUBLISH, QoS: 1, PacketID: 42, Topic: []byte("sensors/building-7/floor-3/temp"),
		Payload: bytes.Repeat([]byte{'x'}, size)}
	if version == Version5 {
		p.Props.MessageExpiry = 3600
		p.Props.ContentType = []byte("application/json")
		p.Props.Set(PropMessageExpiry)
		p.Props.Set(PropContentType)
		p.Props.User = []UserProperty{{Key: []byte("origin"), Value: []byte("edge-1")},
			{Key: []byte("trace"), Value: []byte("4bf92f3577b34da6")}}
	}
	return p
}

func benchConnect() *Packet {
	return &Packet{Type: CONNECT, Connect: Connect{ProtocolLevel: Version311, CleanStart: true, KeepAlive: 60,
		ClientID: []byte("bench-client-0001"), UsernameFlag: true, Username: []byte("user"),
		PasswordFlag: true, Password: []byte("secret")}}
}

func benchSubscribe() *Packet {
	return &Packet{Type: SUBSCRIBE, PacketID: 7, Subscriptions: []Subscription{
		{Filter: []byte("sensors/+/floor-3/temp"), QoS: 1},
		{Filter: []byte("alerts/#"), QoS: 2},
		{Filter: []byte("status/building-7")}}}
}

type benchCase struct {
	name    string
	version byte
	packet  *Packet
}

func benchCases() []benchCase {
	return []benchCase{
		{"Publish/3.1.1/64B", Version311, benchPublish(Version311, 64)},
		{"Publish/3.1.1/4KiB", Version311, benchPublish(Version311, 4096)},
		{"Publish/5.0/64B", Version5, benchPublish(Version5, 64)},
		{"Publish/5.0/4KiB", Version5, benchPublish(Version5, 4096)},
		{"Connect/3.1.1", Version311, benchConnect()},
		{"Subscribe/3.1.1", Version311, benchSubscribe()},
		{"Subscribe/5.0", Version5, benchSubscribe()},
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, c := range benchCases() {
		raw := c.packet.Encode(nil, c.version)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			d := Decoder{Version: c.version}
			var p Packet
			for b.Loop() {
				if _, err := d.Decode(raw, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, c := range benchCases() {
		buf := make([]byte, 0, c.packet.EncodedSize(c.version))
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(cap(buf)))
			for b.Loop() {
				buf = c.packet.Encode(buf[:0], c.version)
			}
		})
	}
}

// BenchmarkAppendPublishHeader is the per-subscriber cost when the payload
// is written separately (writev).
func BenchmarkAppendPublishHeader(b *testing.B) {
	for _, c := range benchCases()[:4] {
		buf := make([]byte, 0, 128)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendPublishHeader(buf[:0], c.version, c.packet)
			}
		})
	}
}
