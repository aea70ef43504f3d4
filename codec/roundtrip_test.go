package codec

import (
	"errors"
	"testing"
)

// TestEncodeDecodeRoundTrip builds packets in code, encodes them at every
// level and decodes them back.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	pub := Packet{Type: PUBLISH, QoS: 1, PacketID: 7, Topic: []byte("a/b"), Payload: []byte("hi")}
	pub.Props.MessageExpiry = 60
	pub.Props.Set(PropMessageExpiry)
	pub.Props.User = []UserProperty{{Key: []byte("k"), Value: []byte("v")}}
	conn := Packet{Type: CONNECT, Connect: Connect{CleanStart: true, KeepAlive: 30, ClientID: []byte("c1"),
		WillFlag: true, WillQoS: 1, WillTopic: []byte("w"), WillPayload: []byte("bye"),
		UsernameFlag: true, Username: []byte("u"), PasswordFlag: true, Password: []byte("p")}}
	sub := Packet{Type: SUBSCRIBE, PacketID: 3, Subscriptions: []Subscription{{Filter: []byte("a/+"), QoS: 2}}}
	for _, v := range []byte{Version31, Version311, Version5} {
		for _, in := range []*Packet{&pub, &conn, &sub} {
			raw := in.Encode(nil, v)
			if len(raw) != in.EncodedSize(v) {
				t.Fatalf("v%d %v: EncodedSize %d, Encode wrote %d", v, in.Type, in.EncodedSize(v), len(raw))
			}
			d := Decoder{Version: v}
			var out Packet
			n, err := d.Decode(raw, &out)
			if err != nil || n != len(raw) {
				t.Fatalf("v%d %v: Decode(% x) = %d, %v", v, in.Type, raw, n, err)
			}
			again := out.Encode(nil, v)
			if string(again) != string(raw) {
				t.Fatalf("v%d %v: re-encoded\n% x\nwant\n% x", v, in.Type, again, raw)
			}
			if _, err := d.Decode(raw[:len(raw)-1], &out); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("v%d %v: truncated frame: %v", v, in.Type, err)
			}
		}
	}
}
