package codec

import (
	"errors"
	"testing"
)

// fuzzLevels maps the fuzzer's level byte to a decoder version: before
// CONNECT (0), 3.1, 3.1.1 and 5.0.
var fuzzLevels = [4]byte{0, Version31, Version311, Version5}

func fuzzLevelIndex(v byte) byte {
	for i, l := range fuzzLevels {
		if l == v {
			return byte(i)
		}
	}
	return 0
}

// FuzzDecode decodes arbitrary bytes at every protocol level. It must never
// panic; what decodes must re-encode to bytes that decode to the same packet.
func FuzzDecode(f *testing.F) {
	for _, v := range Vectors() {
		f.Add(fuzzLevelIndex(v.Version), v.Raw)
		if v.Version == 0 || v.Version == Version311 {
			f.Add(fuzzLevelIndex(Version5), v.Raw)
		}
	}
	for _, v := range ServerVectors {
		f.Add(fuzzLevelIndex(v.Version), v.Raw)
	}
	f.Fuzz(func(t *testing.T, level byte, data []byte) {
		d := Decoder{Version: fuzzLevels[level%4]}
		var p Packet
		n, err := d.Decode(data, &p)
		if err != nil {
			var e *Error
			if n != 0 || (err != ErrIncomplete && !errors.As(err, &e)) {
				t.Fatalf("Decode = %d, %v", n, err)
			}
			return
		}
		if n < 2 || n > len(data) {
			t.Fatalf("Decode used %d of %d bytes", n, len(data))
		}
		raw := p.Encode(nil, d.Version)
		if len(raw) != p.EncodedSize(d.Version) {
			t.Fatalf("EncodedSize %d, Encode wrote %d", p.EncodedSize(d.Version), len(raw))
		}
		d2 := Decoder{Version: d.Version}
		var q Packet
		if m, err := d2.Decode(raw, &q); err != nil || m != len(raw) {
			t.Fatalf("re-decode of % x (from % x) = %d, %v", raw, data[:n], m, err)
		}
		if !equalPackets(&p, &q) {
			t.Fatalf("round trip of % x\n%s\nwant\n%s", data[:n], describe(&q), describe(&p))
		}
	})
}

// FuzzFrameSize reads fixed headers: no panic, sizes within the limits,
// and the length bytes are exactly the minimal encoding of what was read.
func FuzzFrameSize(f *testing.F) {
	for _, v := range Vectors() {
		f.Add(v.Raw, v.MaxPacketSize)
	}
	for _, v := range ServerVectors {
		f.Add(v.Raw, v.MaxPacketSize)
	}
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		total, hdr, err := frameSize(data, max)
		if err != nil {
			if err != ErrIncomplete && err != ErrMalformedLength && err != ErrPacketTooLarge {
				t.Fatalf("unexpected error %v", err)
			}
			if total != 0 {
				t.Fatalf("total %d with error", total)
			}
			return
		}
		if total < 2 || total > MaxFrameSize || (max > 0 && total > max) || hdr < 2 || hdr > 5 {
			t.Fatalf("total %d, header %d, max %d", total, hdr, max)
		}
		if got := appendVarint(nil, total-hdr); string(got) != string(data[1:hdr]) {
			t.Fatalf("length bytes % x re-encode as % x", data[1:hdr], got)
		}
		if n, _ := FrameSize(data, max); n != total {
			t.Fatalf("FrameSize = %d, frameSize = %d", n, total)
		}
	})
}

// FuzzServerFrame judges arbitrary fixed headers as a server does: no
// panic; an answer from the first bytes that more bytes never change (a
// refusal stays a refusal, a size stays that size); a size only for what
// Decode would also take the first byte of, CONNECT alone before CONNECT.
func FuzzServerFrame(f *testing.F) {
	for _, v := range ServerVectors {
		f.Add(fuzzLevelIndex(v.Version), v.Connected, v.Raw, v.MaxPacketSize)
	}
	for _, v := range Vectors() {
		f.Add(fuzzLevelIndex(v.Version), v.Packet.Type != CONNECT, v.Raw, v.MaxPacketSize)
	}
	f.Fuzz(func(t *testing.T, level byte, connected bool, data []byte, max int) {
		d := Decoder{Version: fuzzLevels[level%4], MaxPacketSize: max}
		total, err := d.ServerFrame(data, connected)
		if err == ErrIncomplete {
			if total != 0 {
				t.Fatalf("total %d while incomplete", total)
			}
			return
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("unexpected error %v", err)
		}
		longer := append(append([]byte(nil), data...), 0x7f, 0, 0, 0, 0)
		if t2, err2 := d.ServerFrame(longer, connected); t2 != total || err2 != err {
			t.Fatalf("with more bytes: %d, %v; before: %d, %v", t2, err2, total, err)
		}
		if err != nil {
			return
		}
		if !connected && PacketType(data[0]>>4) != CONNECT {
			t.Fatalf("%v accepted before CONNECT", PacketType(data[0]>>4))
		}
		if !connected && total > MaxConnectSize {
			t.Fatalf("CONNECT of %d bytes accepted", total)
		}
		v := d.Version
		if v == 0 {
			v = Version311
		}
		if err := checkFirstByte(data[0], v); err != nil {
			t.Fatalf("first byte %#x accepted: %v", data[0], err)
		}
	})
}
