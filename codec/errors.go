package codec

import "errors"

// ErrIncomplete means the input does not yet hold a whole packet (or a whole
// fixed header): nothing was consumed; call again with more bytes.
var ErrIncomplete = errors.New("codec: incomplete packet")

// Error is a decoding or validation failure. Reason is the v5 reason code the
// broker sends (DISCONNECT, or CONNACK while connecting); for v3 clients the
// broker closes the connection, or sends the v3 CONNACK code given by
// ConnackV3 when it is non-zero.
type Error struct {
	Reason    byte
	ConnackV3 byte
	Msg       string
}

func (e *Error) Error() string { return "codec: " + e.Msg }

// Errors shared by many checks. Other checks build an *Error with a precise Msg.
var (
	ErrMalformedLength = &Error{Reason: MalformedPacket, Msg: "malformed remaining length"}
	ErrPacketTooLarge  = &Error{Reason: PacketTooLarge, Msg: "packet too large"}
	ErrProtocolName    = &Error{Reason: UnsupportedProtocolVersion, ConnackV3: ConnRefusedProtocolVersion, Msg: "unsupported protocol name or level"}
)
