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
	// ErrFirstNotConnect: a connection must begin with CONNECT [MQTT-3.1.0-1].
	ErrFirstNotConnect = &Error{Reason: ProtocolError, Msg: "first packet is not CONNECT"}
)

// Errors of single checks, one value each so that failing never allocates.
// The v5 reason follows the spec's wording: "Malformed Packet" for what
// cannot be parsed, "Protocol Error" for what parses but is not allowed.
var (
	errShort        = &Error{Reason: MalformedPacket, Msg: "packet shorter than its fields"}
	errTrailing     = &Error{Reason: MalformedPacket, Msg: "bytes after the end of the packet"}
	errReservedType = &Error{Reason: MalformedPacket, Msg: "reserved packet type"}
	errFlags        = &Error{Reason: MalformedPacket, Msg: "reserved fixed-header flags"}
	errQoS3         = &Error{Reason: MalformedPacket, Msg: "PUBLISH QoS 3"}
	errDupQoS0      = &Error{Reason: MalformedPacket, Msg: "DUP set on a QoS 0 PUBLISH"}
	errPacketID0    = &Error{Reason: ProtocolError, Msg: "packet identifier 0"}
	// mosquitto calls a (UN)SUBSCRIBE with packet id 0 malformed.
	errSubPacketID0 = &Error{Reason: MalformedPacket, Msg: "packet identifier 0"}
	errUTF8         = &Error{Reason: MalformedPacket, Msg: "invalid UTF-8 string"}
	// A protocol error rather than "topic name invalid" (which the spec
	// gives to a well-formed name refused), as mosquitto answers.
	errTopicWildcard = &Error{Reason: ProtocolError, Msg: "wildcard in topic name"}
	errTopicEmpty    = &Error{Reason: ProtocolError, Msg: "empty topic name without topic alias"}
	errTopicEmptyV3  = &Error{Reason: TopicNameInvalid, Msg: "empty topic name"}
	errFilter        = &Error{Reason: TopicFilterInvalid, Msg: "invalid topic filter"}
	// mosquitto's reasons for a topic or filter over MaxTopicSlashes.
	errTopicLevels     = &Error{Reason: ProtocolError, Msg: "topic name of more than 201 levels"}
	errFilterLevels    = &Error{Reason: MalformedPacket, Msg: "topic filter of more than 201 levels"}
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
	errSecondConnect   = &Error{Reason: ProtocolError, Msg: "second CONNECT"}
	errServerPacket    = &Error{Reason: ProtocolError, Msg: "a packet only a server sends"}
)

// malformedTwin gives the errors a (UN)SUBSCRIBE can fail with a twin whose
// reason is Malformed Packet: mosquitto answers every such failure so (its
// 13-malformed-(un)subscribe-v5 tests), and clients see the same code from
// midge. No Local on a shared subscription stays a Protocol Error, as the
// spec words it [MQTT-3.8.3-4] and mosquitto sends it.
var malformedTwin = func() map[*Error]*Error {
	m := make(map[*Error]*Error)
	for _, e := range []*Error{errNoFilters, errNoUnsubFilters, errSubQoS, errRetainHandling, errFilter,
		errPropDuplicate, errPropValue, errUTF8} {
		if e.Reason != MalformedPacket {
			m[e] = &Error{Reason: MalformedPacket, Msg: e.Msg}
		}
	}
	return m
}()

// asMalformed returns err with the reason Malformed Packet (see
// malformedTwin); a failure never allocates.
func asMalformed(err error) error {
	e, ok := err.(*Error)
	if !ok || e == errNoLocalShared {
		return err
	}
	if t := malformedTwin[e]; t != nil {
		return t
	}
	return err
}
