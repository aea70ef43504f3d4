package codec

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// equalPackets compares two packets field by field, treating nil and empty
// slices alike (a decoded empty topic aliases the input; a literal is nil).
func equalPackets(a, b *Packet) bool {
	return equalValues(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem())
}

func equalValues(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !equalValues(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !equalValues(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return a.Bool() == b.Bool()
	default:
		return a.Uint() == b.Uint()
	}
}

// describe prints a packet for failure messages.
func describe(p *Packet) string { return fmt.Sprintf("%+v", *p) }

func TestVectorsDecode(t *testing.T) {
	for _, v := range Vectors() {
		if v.EncodeOnly {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			d := Decoder{Version: v.Version, MaxPacketSize: v.MaxPacketSize}
			var p Packet
			n, err := d.Decode(v.Raw, &p)
			if v.Invalid {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Decode = %d, %v; want *Error with reason %#x", n, err, v.Reason)
				}
				if e.Reason != v.Reason || n != 0 {
					t.Fatalf("Decode = %d, %v (reason %#x); want reason %#x", n, err, e.Reason, v.Reason)
				}
				return
			}
			if err != nil || n != len(v.Raw) {
				t.Fatalf("Decode = %d, %v; want %d, nil", n, err, len(v.Raw))
			}
			if !equalPackets(&p, &v.Packet) {
				t.Fatalf("decoded\n%s\nwant\n%s", describe(&p), describe(&v.Packet))
			}
			if v.Packet.Type == CONNECT && d.Version != v.Packet.Connect.ProtocolLevel {
				t.Fatalf("decoder version %d after CONNECT, want %d", d.Version, v.Packet.Connect.ProtocolLevel)
			}
		})
	}
}

func TestVectorsEncode(t *testing.T) {
	for _, v := range Vectors() {
		if v.DecodeOnly || v.Invalid {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			got := v.Packet.Encode(nil, v.Version)
			if string(got) != string(v.Raw) {
				t.Fatalf("Encode\n% x\nwant\n% x", got, v.Raw)
			}
			if n := v.Packet.EncodedSize(v.Version); n != len(v.Raw) {
				t.Fatalf("EncodedSize = %d, want %d", n, len(v.Raw))
			}
			// Encode appends: what was in dst stays.
			prefix := []byte("xyz")
			if got := v.Packet.Encode(prefix, v.Version); string(got) != "xyz"+string(v.Raw) {
				t.Fatalf("Encode after a prefix\n% x", got)
			}
			if v.Packet.Type == PUBLISH {
				hdr := AppendPublishHeader(nil, v.Version, &v.Packet)
				if string(hdr)+string(v.Packet.Payload) != string(v.Raw) {
					t.Fatalf("AppendPublishHeader + payload\n% x\nwant\n% x", hdr, v.Raw)
				}
			}
		})
	}
}

// TestVectorsRoundTrip decodes every valid vector, encodes the result and
// decodes that again: the packet must survive.
func TestVectorsRoundTrip(t *testing.T) {
	for _, v := range Vectors() {
		if v.Invalid || v.EncodeOnly {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			d := Decoder{Version: v.Version}
			var p, q Packet
			if _, err := d.Decode(v.Raw, &p); err != nil {
				t.Fatal(err)
			}
			raw := p.Encode(nil, d.Version)
			d2 := Decoder{Version: v.Version}
			if _, err := d2.Decode(raw, &q); err != nil {
				t.Fatalf("re-decode of % x: %v", raw, err)
			}
			if !equalPackets(&p, &q) {
				t.Fatalf("round trip\n%s\nwant\n%s", describe(&q), describe(&p))
			}
		})
	}
}

// TestVectorsByteByByte feeds each valid frame one byte at a time: the
// decoder reports ErrIncomplete and consumes nothing until the last byte.
func TestVectorsByteByByte(t *testing.T) {
	for _, v := range Vectors() {
		if v.EncodeOnly || v.Invalid {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			d := Decoder{Version: v.Version}
			var p Packet
			for i := 0; i < len(v.Raw); i++ {
				n, err := d.Decode(v.Raw[:i], &p)
				if err != ErrIncomplete || n != 0 {
					t.Fatalf("Decode(first %d bytes) = %d, %v; want 0, ErrIncomplete", i, n, err)
				}
				if _, err := FrameSize(v.Raw[:i], 0); err != ErrIncomplete && err != nil {
					t.Fatalf("FrameSize(first %d bytes): %v", i, err)
				}
			}
			if n, err := d.Decode(v.Raw, &p); err != nil || n != len(v.Raw) {
				t.Fatalf("Decode(all) = %d, %v", n, err)
			}
		})
	}
}

// TestVectorsConcatenated decodes all valid frames of one protocol level
// from a single buffer, one after the other, into one reused Packet.
func TestVectorsConcatenated(t *testing.T) {
	for _, level := range []byte{Version31, Version311, Version5} {
		var buf []byte
		var want []Vector
		for _, v := range Vectors() {
			if v.Invalid || v.EncodeOnly || v.Packet.Type == CONNECT || v.Version != level {
				continue
			}
			buf = append(buf, v.Raw...)
			want = append(want, v)
		}
		d := Decoder{Version: level}
		var p Packet
		for i, v := range want {
			n, err := d.Decode(buf, &p)
			if err != nil || n != len(v.Raw) {
				t.Fatalf("level %d frame %d (%s): Decode = %d, %v", level, i, v.Name, n, err)
			}
			if !equalPackets(&p, &v.Packet) {
				t.Fatalf("level %d frame %d (%s): decoded\n%s\nwant\n%s", level, i, v.Name, describe(&p), describe(&v.Packet))
			}
			buf = buf[n:]
		}
		if len(buf) != 0 {
			t.Fatalf("level %d: %d bytes left", level, len(buf))
		}
	}
}

// TestVectorsCoverage checks that the table holds every packet type at
// every level and every property at least once.
func TestVectorsCoverage(t *testing.T) {
	seen := map[[2]byte]bool{}
	var props uint64
	for _, v := range Vectors() {
		if v.Invalid {
			continue
		}
		level := v.Version
		if v.Packet.Type == CONNECT {
			level = v.Packet.Connect.ProtocolLevel
		}
		seen[[2]byte{level, byte(v.Packet.Type)}] = true
		for _, pr := range []*Properties{&v.Packet.Props, &v.Packet.Connect.WillProps} {
			props |= propMask(pr, v.Packet.Type) | propMask(pr, willScope)
		}
	}
	for _, level := range []byte{Version31, Version311, Version5} {
		for typ := CONNECT; typ <= AUTH; typ++ {
			if typ == AUTH && level != Version5 {
				continue
			}
			if !seen[[2]byte{level, byte(typ)}] {
				t.Errorf("no valid vector for %v at level %d", typ, level)
			}
		}
	}
	if props != allProps {
		t.Errorf("properties without a vector: %#x", allProps&^props)
	}
}

// TestServerVectors: each is refused once its first Early bytes are in,
// never before, and never later: a server closes the connection without
// waiting for a body.
func TestServerVectors(t *testing.T) {
	for _, v := range ServerVectors {
		t.Run(v.Name, func(t *testing.T) {
			d := Decoder{Version: v.Version, MaxPacketSize: v.MaxPacketSize}
			for i := 0; i < v.Early; i++ {
				if n, err := d.ServerFrame(v.Raw[:i], v.Connected); err != ErrIncomplete || n != 0 {
					t.Fatalf("ServerFrame(first %d bytes) = %d, %v; want ErrIncomplete", i, n, err)
				}
			}
			for i := v.Early; i <= len(v.Raw); i++ {
				n, err := d.ServerFrame(v.Raw[:i], v.Connected)
				var e *Error
				if !errors.As(err, &e) || e.Reason != v.Reason || n != 0 {
					t.Fatalf("ServerFrame(first %d bytes) = %d, %v; want reason %#x", i, n, err, v.Reason)
				}
			}
		})
	}
}

// TestServerFrameValid: every valid vector a client sends passes
// ServerFrame with its whole size, CONNECT first and the rest after it.
func TestServerFrameValid(t *testing.T) {
	clientSends := map[PacketType]bool{CONNECT: true, PUBLISH: true, PUBACK: true, PUBREC: true, PUBREL: true,
		PUBCOMP: true, SUBSCRIBE: true, UNSUBSCRIBE: true, PINGREQ: true, DISCONNECT: true, AUTH: true}
	n := 0
	for _, v := range Vectors() {
		if v.Invalid || v.EncodeOnly || !clientSends[v.Packet.Type] {
			continue
		}
		n++
		d := Decoder{Version: v.Version}
		total, err := d.ServerFrame(v.Raw, v.Packet.Type != CONNECT)
		if err != nil || total != len(v.Raw) {
			t.Errorf("%s: ServerFrame = %d, %v; want %d", v.Name, total, err, len(v.Raw))
		}
	}
	if n < 50 {
		t.Fatalf("only %d vectors checked", n)
	}
}
