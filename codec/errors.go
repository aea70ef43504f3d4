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

// Errors of single checks, one value each so that failing never allocates.
// The v5 reason follows the spec's wording: "Malformed Packet" for what
// cannot be parsed, "Protocol Error" for what parses but is not allowed.
var (
	errShort           = &Error{Reason: MalformedPacket, Msg: "packet shorter than its fields"}
	errTrailing        = &Error{Reason: MalformedPacket, Msg: "bytes after the end of the packet"}
	errReservedType    = &Error{Reason: MalformedPacket, Msg: "reserved packet type"}
	errFlags           = &Error{Reason: MalformedPacket, Msg: "reserved fixed-header flags"}
	errQoS3            = &Error{Reason: MalformedPacket, Msg: "PUBLISH QoS 3"}
	errDupQoS0         = &Error{Reason: MalformedPacket, Msg: "DUP set on a QoS 0 PUBLISH"}
	errPacketID0       = &Error{Reason: ProtocolError, Msg: "packet identifier 0"}
	errUTF8            = &Error{Reason: MalformedPacket, Msg: "invalid UTF-8 string"}
	errTopicWildcard   = &Error{Reason: TopicNameInvalid, Msg: "wildcard in topic name"}
	errTopicEmpty      = &Error{Reason: ProtocolError, Msg: "empty topic name without topic alias"}
	errTopicEmptyV3    = &Error{Reason: TopicNameInvalid, Msg: "empty topic name"}
	errFilter          = &Error{Reason: TopicFilterInvalid, Msg: "invalid topic filter"}
	errNoFilters       = &Error{Reason: ProtocolError, Msg: "SUBSCRIBE without topic filters"}
	errNoUnsubFilters  = &Error{Reason: ProtocolError, Msg: "UNSUBSCRIBE without topic filters"}
	errSubQoS          = &Error{Reason: ProtocolError, Msg: "subscription QoS 3"}
	errRetainHandling  = &Error{Reason: ProtocolError, Msg: "retain handling 3"}
	errSubReserved     = &Error{Reason: MalformedPacket, Msg: "reserved subscription option bits"}
	errNoLocalShared   = &Error{Reason: ProtocolError, Msg: "no local on a shared subscription"}
	errConnectReserved = &Error{Reason: MalformedPacket, Msg: "reserved CONNECT flag"}
	errWillQoS         = &Error{Reason: MalformedPacket, Msg: "will QoS 3"}
	errWillFlags       = &Error{Reason: MalformedPacket, Msg: "will QoS or retain without will flag"}
	errPasswordFlag    = &Error{Reason: MalformedPacket, Msg: "password flag without username flag"}
	errWillTopic       = &Error{Reason: TopicNameInvalid, Msg: "invalid will topic"}
	errConnackFlags    = &Error{Reason: MalformedPacket, Msg: "reserved CONNACK flags"}
	errReasonCode      = &Error{Reason: ProtocolError, Msg: "reason code not allowed in this packet"}
	errNoReasonCodes   = &Error{Reason: ProtocolError, Msg: "acknowledgement without reason codes"}
	errPropsLength     = &Error{Reason: MalformedPacket, Msg: "property length exceeds the packet"}
	errPropUnknown     = &Error{Reason: MalformedPacket, Msg: "unknown property"}
	errPropNotAllowed  = &Error{Reason: MalformedPacket, Msg: "property not allowed in this packet"}
	errPropDuplicate   = &Error{Reason: ProtocolError, Msg: "property given more than once"}
	errPropValue       = &Error{Reason: ProtocolError, Msg: "property value out of range"}
	errTopicAlias0     = &Error{Reason: TopicAliasInvalid, Msg: "topic alias 0"}
	errResponseTopic   = &Error{Reason: ProtocolError, Msg: "invalid response topic"}
	errAuthData        = &Error{Reason: ProtocolError, Msg: "authentication data without method"}
)
