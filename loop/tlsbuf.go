package loop

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"unsafe"
)

// crypto/tls keeps, per connection, the raw input it reads records into
// (rawInput, a bytes.Buffer that grows to the largest record plus 512 bytes
// and keeps that size), the plaintext of the last record (input, a
// bytes.Reader over rawInput) and the handshake messages (hand, which keeps
// the ClientHello's size). Measured on 5,000 idle connections, these were
// 2.7 KiB of the 6.4 KiB of live heap a TLS connection held, for nothing.
//
// Between two turns of a connection they are empty, so the loop lends each
// connection its own raw buffer for the turn and takes it back after: no
// connection keeps one while idle, and no turn allocates one. The fields are
// unexported, so they are found by name and type when the package starts; if
// a Go release renames or retypes them, tlsBufs.ok is false and connections
// simply keep their buffers (TestTLSIdleFootprint then fails on the budget).
// Only empty buffers are touched, so what crypto/tls sees is the same state:
// an empty buffer, with or without capacity.
var tlsBufs = findTLSBufs()

type tlsBufOffsets struct {
	ok                    bool
	rawInput, input, hand uintptr
}

func findTLSBufs() tlsBufOffsets {
	t := reflect.TypeFor[tls.Conn]()
	buf, rd := reflect.TypeFor[bytes.Buffer](), reflect.TypeFor[bytes.Reader]()
	raw, ok1 := t.FieldByName("rawInput")
	in, ok2 := t.FieldByName("input")
	hand, ok3 := t.FieldByName("hand")
	if !ok1 || !ok2 || !ok3 || raw.Type != buf || in.Type != rd || hand.Type != buf {
		return tlsBufOffsets{}
	}
	return tlsBufOffsets{ok: true, rawInput: raw.Offset, input: in.Offset, hand: hand.Offset}
}

// tlsFields returns tc's raw input, plaintext and handshake buffers.
func tlsFields(tc *tls.Conn) (raw *bytes.Buffer, input *bytes.Reader, hand *bytes.Buffer) {
	p := unsafe.Pointer(tc)
	return (*bytes.Buffer)(unsafe.Add(p, tlsBufs.rawInput)),
		(*bytes.Reader)(unsafe.Add(p, tlsBufs.input)),
		(*bytes.Buffer)(unsafe.Add(p, tlsBufs.hand))
}

// tlsRawBuffer is the size of the loop's raw buffer: crypto/tls grows its raw
// input to the largest record (header and 2^14 + 2^11 bytes) plus 512, so
// this one never grows.
const tlsRawBuffer = tlsRecordHeader + tlsMaxRecord + 1024

// lendTLS gives tc the loop's raw buffer for this turn, if its own is empty.
// Loop-only, after the handshake.
func (ls *loopState) lendTLS(tc *tls.Conn) {
	if !tlsBufs.ok {
		return
	}
	raw, _, _ := tlsFields(tc)
	if raw.Len() > 0 {
		return // bytes of its own (never expected: records are fed whole)
	}
	if ls.tlsRaw == nil {
		ls.tlsRaw = make([]byte, 0, tlsRawBuffer)
	}
	*raw = *bytes.NewBuffer(ls.tlsRaw[:0])
}

// releaseTLS takes back what tc holds while idle: its raw buffer (the
// loop's, or its own), the plaintext reader over it, and an empty handshake
// buffer. What is not empty is left alone. Loop-only, after the handshake.
func releaseTLS(tc *tls.Conn) {
	if !tlsBufs.ok {
		return
	}
	raw, input, hand := tlsFields(tc)
	if raw.Len() == 0 && input.Len() == 0 {
		*raw, *input = bytes.Buffer{}, bytes.Reader{}
	}
	if hand.Len() == 0 && hand.Cap() > 0 {
		*hand = bytes.Buffer{}
	}
}
