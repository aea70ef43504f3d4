package codec

// MaxRemainingLength is the largest remaining length a four-byte variable
// byte integer can carry [MQTT-1.5.5].
const MaxRemainingLength = 268435455

// MaxFrameSize is the protocol's limit on a whole frame: the type byte, four
// length bytes and MaxRemainingLength.
const MaxFrameSize = 1 + 4 + MaxRemainingLength

// MaxConnectSize bounds a CONNECT frame, which a server must buffer whole
// before it knows who is connecting: ServerFrame refuses a larger one from
// its fixed header (under a smaller MaxPacketSize, that one applies). The
// largest 3.1.1 CONNECT, every string and the will at their 65,535-byte
// maximum, is about 320 KiB; the rest leaves room for 5.0's properties.
const MaxConnectSize = 512 << 10

// checkFirstByte judges the first byte of a fixed header on its own: a
// reserved packet type (0; 15 before 5.0), flags the type forbids
// [MQTT-2.1.3-1], a PUBLISH with QoS 3 [MQTT-3.3.1-4] or with DUP at QoS 0
// [MQTT-3.3.1-2]. v is the protocol level (3.1.1 when not known yet).
func checkFirstByte(b, v byte) error {
	t, flags := PacketType(b>>4), b&0x0f
	switch {
	case t == PUBLISH:
		if flags&0x06 == 0x06 {
			return errQoS3
		}
		if flags&0x0e == 0x08 {
			return errDupQoS0
		}
		return nil
	case t == 0 || (t == AUTH && v != Version5):
		return errReservedType
	case flags != wantFlags[t] && !dup31(v, t, flags):
		return errFlags
	}
	return nil
}

// ServerFrame is FrameSize for a server reading a client, judged as the
// bytes arrive, so that a connection is closed as soon as what it sends is
// wrong rather than once a body its length promises has been buffered.
// From the first byte: a first packet other than CONNECT [MQTT-3.1.0-1]
// (AUTH included: with no CONNECT there is no authentication method), a
// second CONNECT [MQTT-3.1.0-2], a packet only a server sends, and what
// checkFirstByte refuses. From the remaining length: a frame over
// MaxPacketSize, and a CONNECT over MaxConnectSize. connected tells whether
// a CONNECT was accepted on the connection.
func (d *Decoder) ServerFrame(b []byte, connected bool) (int, error) {
	if len(b) == 0 {
		return 0, ErrIncomplete
	}
	t := PacketType(b[0] >> 4)
	if !connected && t != CONNECT {
		return 0, ErrFirstNotConnect
	}
	v := d.Version
	if v == 0 {
		v = Version311
	}
	if err := checkFirstByte(b[0], v); err != nil {
		return 0, err
	}
	max := d.MaxPacketSize
	switch {
	case !connected:
		if max <= 0 || max > MaxConnectSize {
			max = MaxConnectSize
		}
	case t == CONNECT:
		return 0, errSecondConnect
	case t == CONNACK || t == SUBACK || t == UNSUBACK || t == PINGRESP:
		return 0, errServerPacket
	}
	total, _, err := frameSize(b, max)
	return total, err
}

// FrameSize reads the fixed header at the start of b and returns the total
// frame length (1 + varint bytes + remaining length). It returns
// ErrIncomplete while the header is not complete, ErrMalformedLength when the
// remaining length uses more than four bytes or is not minimally encoded, and
// ErrPacketTooLarge when the total exceeds max (0 = the protocol's limit).
// The size is known before the body arrives, so an oversized frame can be
// refused before it is buffered.
func FrameSize(b []byte, max int) (int, error) {
	total, _, err := frameSize(b, max)
	return total, err
}

// frameSize is FrameSize that also returns the fixed header's length.
func frameSize(b []byte, max int) (total, header int, err error) {
	if len(b) < 2 {
		return 0, 0, ErrIncomplete
	}
	rl, n, err := readVarint(b[1:])
	if err != nil {
		return 0, 0, err
	}
	total = 1 + n + rl
	if max > 0 && total > max {
		return 0, 0, ErrPacketTooLarge
	}
	return total, 1 + n, nil
}

// readVarint decodes a variable byte integer [MQTT-1.5.5] at the start of b:
// ErrIncomplete when b ends inside it, ErrMalformedLength when it runs over
// four bytes or uses more bytes than needed [MQTT-1.5.5-1].
func readVarint(b []byte) (v, n int, err error) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, ErrIncomplete
		}
		c := b[i]
		v |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0, ErrMalformedLength
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, ErrMalformedLength
}

// varintSize is the number of bytes appendVarint writes for v.
func varintSize(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	}
	return 4
}

// appendVarint appends v (at most MaxRemainingLength) as a variable byte integer.
func appendVarint(dst []byte, v int) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// reader walks the body of one frame. Every read past the end reports
// errShort: the remaining length promised more than the fields hold.
type reader struct {
	b []byte
	i int
}

func (r *reader) left() int { return len(r.b) - r.i }

func (r *reader) u8() (byte, error) {
	if r.i >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

func (r *reader) u16() (uint16, error) {
	if r.left() < 2 {
		return 0, errShort
	}
	v := uint16(r.b[r.i])<<8 | uint16(r.b[r.i+1])
	r.i += 2
	return v, nil
}

func (r *reader) u32() (uint32, error) {
	if r.left() < 4 {
		return 0, errShort
	}
	b := r.b[r.i:]
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	r.i += 4
	return v, nil
}

func (r *reader) varint() (int, error) {
	v, n, err := readVarint(r.b[r.i:])
	if err == ErrIncomplete {
		return 0, errShort
	}
	if err != nil {
		return 0, err
	}
	r.i += n
	return v, nil
}

// binary reads two-byte-length-prefixed data [MQTT-1.5.6]. The result aliases
// the input, capped so that appending to it cannot overwrite what follows.
func (r *reader) binary() ([]byte, error) {
	n, err := r.u16()
	if err != nil {
		return nil, err
	}
	if r.left() < int(n) {
		return nil, errShort
	}
	end := r.i + int(n)
	s := r.b[r.i:end:end]
	r.i = end
	return s, nil
}

// str reads a UTF-8 encoded string: well-formed, without U+0000
// [MQTT-1.5.4-1, MQTT-1.5.4-2].
func (r *reader) str() ([]byte, error) {
	s, err := r.binary()
	if err != nil {
		return nil, err
	}
	if !ValidUTF8String(s) {
		return nil, errUTF8
	}
	return s, nil
}

// rest returns everything left, capped like binary.
func (r *reader) rest() []byte {
	end := len(r.b)
	s := r.b[r.i:end:end]
	r.i = end
	return s
}

func appendU16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendBinary appends s with its two-byte length; s must not exceed 65535 bytes.
func appendBinary(dst []byte, s []byte) []byte {
	dst = appendU16(dst, uint16(len(s)))
	return append(dst, s...)
}
