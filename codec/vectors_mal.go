package codec

// mal is a shorthand for an invalid vector.
func mal(name string, version byte, reason byte, raw ...byte) Vector {
	return Vector{Name: name, Version: version, Reason: reason, Invalid: true, DecodeOnly: true, Raw: raw}
}

// vectorsMalformed is input the decoder must refuse, with the reason code.
var vectorsMalformed = []Vector{
	// Fixed header.
	mal("FixedHeaderMalLengthOver4Bytes", 4, MalformedPacket,
		0x30,                         // PUBLISH
		0xff, 0xff, 0xff, 0xff, 0x01, // remaining length in 5 bytes [MQTT-1.5.5]
	),
	mal("FixedHeaderMalLengthNotMinimal", 4, MalformedPacket,
		0xc0,       // PINGREQ
		0x80, 0x00, // remaining length 0 in 2 bytes [MQTT-1.5.5-1]
	),
	mal("FixedHeaderMalReservedType0", 4, MalformedPacket, 0x00, 0),
	mal("AuthMalMqtt311", 4, MalformedPacket, 0xf0, 0),                        // type 15 is reserved before 5.0
	mal("PubrelMalFlags", 4, MalformedPacket, 0x60, 2, 0, 1),                  // flags must be 0010 [MQTT-2.1.3-1]
	mal("SubscribeMalFlags", 4, MalformedPacket, 0x80, 6, 0, 1, 0, 1, 'a', 0), // [MQTT-2.1.3-1]
	mal("UnsubscribeMalFlags", 4, MalformedPacket, 0xa0, 5, 0, 1, 0, 1, 'a'),  // [MQTT-2.1.3-1]
	mal("PubackMalFlags", 4, MalformedPacket, 0x41, 2, 0, 1),                  // flags must be 0000 [MQTT-2.1.3-1]
	mal("PingreqMalFlags", 4, MalformedPacket, 0xc8, 0),                       // [MQTT-2.1.3-1]
	// Refused from the first byte, before the body their length promises:
	// the decoder need not wait for 256 MiB that will never come.
	mal("FixedHeaderMalReservedType0Early", 4, MalformedPacket,
		0x00,                   // reserved type 0
		0xff, 0xff, 0xff, 0x7f, // remaining length 268,435,455, body absent
	),
	mal("AuthMalMqtt311Early", 4, MalformedPacket, 0xf0, 0xff, 0xff, 0xff, 0x7f), // type 15 before 5.0
	mal("PublishMalQoS3Early", 5, MalformedPacket, 0x36, 0xff, 0xff, 0xff, 0x7f), // [MQTT-3.3.1-4]
	mal("PublishMalDupQoS0Early", 5, MalformedPacket, 0x38, 0xff, 0x7f),          // [MQTT-3.3.1-2]
	mal("SubscribeMalFlagsEarly", 5, MalformedPacket, 0x80, 0xff, 0xff, 0x7f),    // [MQTT-2.1.3-1]
	mal("PubrelMalFlagsEarly", 4, MalformedPacket, 0x60, 0x80),                   // [MQTT-2.1.3-1], length unfinished
	{Name: "PublishMalTooLarge", Version: 4, Invalid: true, DecodeOnly: true, Reason: PacketTooLarge,
		MaxPacketSize: 100, Raw: []byte{
			0x30, 0x80, 0x01, // PUBLISH, remaining length 128: refused before the body arrives
		}},

	// PUBLISH.
	mal("PublishMalQoS3", 4, MalformedPacket,
		0x36, 5, // PUBLISH QoS 3 [MQTT-3.3.1-4]
		0, 1, 'a', // topic
		0, 1, // packet id
	),
	mal("PublishMalDupQoS0", 4, MalformedPacket,
		0x38, 3, // PUBLISH DUP QoS 0 [MQTT-3.3.1-2]
		0, 1, 'a', // topic
	),
	mal("PublishMalPacketID0", 4, ProtocolError,
		0x32, 5, // PUBLISH QoS 1
		0, 1, 'a', // topic
		0, 0, // packet id 0 [MQTT-2.2.1-3]
	),
	mal("PublishMalTopicPlus", 4, ProtocolError,
		0x30, 5, // PUBLISH
		0, 3, 'a', '/', '+', // wildcard in topic name [MQTT-3.3.2-2]
	),
	mal("PublishMalTopicHash", 5, ProtocolError,
		0x30, 4, // PUBLISH
		0, 1, '#', // wildcard in topic name [MQTT-3.3.2-2]
		0, // property length
	),
	mal("PublishMalEmptyTopicMqtt311", 4, TopicNameInvalid,
		0x30, 2, // PUBLISH
		0, 0, // empty topic [MQTT-4.7.3-1]
	),
	mal("PublishMalEmptyTopicNoAlias", 5, ProtocolError,
		0x30, 3, // PUBLISH
		0, 0, // empty topic without a topic alias
		0, // property length
	),
	mal("PublishMalTopicInvalidUTF8", 4, MalformedPacket,
		0x30, 4, // PUBLISH
		0, 2, 0xc3, 0x28, // broken two-byte sequence [MQTT-1.5.4-1]
	),
	mal("PublishMalTopicSurrogateD800", 4, MalformedPacket,
		0x30, 5, // PUBLISH
		0, 3, 0xed, 0xa0, 0x80, // U+D800 encoded [MQTT-1.5.4-1]
	),
	mal("PublishMalTopicNull", 4, MalformedPacket,
		0x30, 5, // PUBLISH
		0, 3, 'a', 0, 'b', // U+0000 [MQTT-1.5.4-2]
	),
	mal("PublishMalTopicOverlong", 4, MalformedPacket,
		0x30, 4, // PUBLISH
		0, 2, 0xc0, 0xaf, // overlong '/' [MQTT-1.5.4-1]
	),
	mal("PublishMalTopicLongerThanPacket", 4, MalformedPacket,
		0x30, 4, // PUBLISH, remaining length 4
		0, 5, 'a', 'b', // topic length 5, only 2 bytes follow
	),
	mal("PublishMalTopicAlias0", 5, TopicAliasInvalid,
		0x30, 7, // PUBLISH
		0, 1, 'a', // topic
		3,          // property length
		0x23, 0, 0, // topic alias 0 [MQTT-3.3.2-8]
	),
	mal("PublishMalPropUnknown", 5, MalformedPacket,
		0x30, 6, // PUBLISH
		0, 1, 'a', // topic
		2,       // property length
		0x7f, 0, // no such property
	),
	mal("PublishMalPropNotAllowed", 5, MalformedPacket,
		0x30, 9, // PUBLISH
		0, 1, 'a', // topic
		5,                // property length
		0x11, 0, 0, 0, 1, // session expiry interval is no PUBLISH property
	),
	mal("PublishMalPropTwice", 5, ProtocolError,
		0x30, 14, // PUBLISH
		0, 1, 'a', // topic
		10,               // property length
		0x02, 0, 0, 0, 1, // message expiry interval
		0x02, 0, 0, 0, 2, // again
	),
	mal("PublishMalPropertyLengthTooLong", 5, MalformedPacket,
		0x30, 6, // PUBLISH
		0, 1, 'a', // topic
		9,       // property length 9, only 2 bytes follow
		0x01, 0, // payload format
	),
	mal("PublishMalPropValueTruncated", 5, MalformedPacket,
		0x30, 7, // PUBLISH
		0, 1, 'a', // topic
		3,          // property length
		0x02, 0, 0, // message expiry interval cut short
	),
	mal("PublishMalResponseTopicWildcard", 5, ProtocolError,
		0x30, 8, // PUBLISH
		0, 1, 'a', // topic
		4,               // property length
		0x08, 0, 1, '#', // response topic with a wildcard [MQTT-3.3.2-14]
	),
	mal("PublishMalSubscriptionID0", 5, ProtocolError,
		0x30, 6, // PUBLISH
		0, 1, 'a', // topic
		2,       // property length
		0x0b, 0, // subscription identifier 0
	),
	mal("PublishMalUserPropertyInvalidUTF8", 5, MalformedPacket,
		0x30, 10, // PUBLISH
		0, 1, 'a', // topic
		6,                      // property length
		0x26, 0, 1, 0xff, 0, 0, // user property key 0xff [MQTT-1.5.4-1]
	),
	mal("PublishMalContentTypeNull", 5, MalformedPacket,
		0x30, 8, // PUBLISH
		0, 1, 'a', // topic
		4,             // property length
		0x03, 0, 1, 0, // content type U+0000 [MQTT-1.5.4-2]
	),

	// Acknowledgements.
	mal("PubackMalPacketID0", 4, ProtocolError, 0x40, 2, 0, 0), // [MQTT-2.2.1-3]
	mal("PubackMalShort", 4, MalformedPacket, 0x40, 1, 0),
	mal("PubackMalMqtt311Long", 4, MalformedPacket, 0x40, 3, 0, 1, 0), // 3.1.1 PUBACK has 2 bytes
	mal("PubackMalReasonCode", 5, ProtocolError,
		0x40, 3, // PUBACK
		0, 1, // packet id
		0x05, // not a PUBACK reason code
	),
	mal("PubrelMalReasonCode", 5, ProtocolError,
		0x62, 3, // PUBREL
		0, 1, // packet id
		0x10, // not a PUBREL reason code
	),
	mal("PubcompMalPropNotAllowed", 5, MalformedPacket,
		0x70, 7, // PUBCOMP
		0, 1, // packet id
		0,          // reason code
		3,          // property length
		0x23, 0, 1, // topic alias is no PUBCOMP property
	),

	// SUBSCRIBE, UNSUBSCRIBE and their acknowledgements. Every failure of a
	// (UN)SUBSCRIBE is Malformed Packet, as mosquitto answers, but No Local
	// on a shared subscription (a Protocol Error in the spec's words).
	mal("SubscribeMalNoFilters", 4, MalformedPacket, 0x82, 2, 0, 1),               // [MQTT-3.8.3-3]
	mal("UnsubscribeMalNoFilters", 4, MalformedPacket, 0xa2, 2, 0, 1),             // [MQTT-3.10.3-2]
	mal("SubscribeMalPacketID0", 4, MalformedPacket, 0x82, 6, 0, 0, 0, 1, 'a', 0), // [MQTT-2.2.1-3], malformed as mosquitto says
	mal("SubscribeMalFilterHashNotLast", 4, MalformedPacket,
		0x82, 10, // SUBSCRIBE
		0, 1, // packet id
		0, 5, 'a', '/', '#', '/', 'b', // '#' not last [MQTT-4.7.1-1]
		0, // options
	),
	mal("SubscribeMalFilterHashNotAlone", 4, MalformedPacket,
		0x82, 9, // SUBSCRIBE
		0, 1, // packet id
		0, 4, 'a', '/', 'b', '#', // '#' shares its level [MQTT-4.7.1-1]
		0, // options
	),
	mal("SubscribeMalFilterPlusNotAlone", 4, MalformedPacket,
		0x82, 9, // SUBSCRIBE
		0, 1, // packet id
		0, 4, 'a', '+', '/', 'b', // '+' shares its level [MQTT-4.7.1-2]
		0, // options
	),
	mal("SubscribeMalFilterEmpty", 4, MalformedPacket,
		0x82, 5, // SUBSCRIBE
		0, 1, // packet id
		0, 0, // empty filter [MQTT-4.7.3-1]
		0, // options
	),
	mal("SubscribeMalFilterInvalidUTF8", 4, MalformedPacket,
		0x82, 6, // SUBSCRIBE
		0, 1, // packet id
		0, 1, 0x80, // lone continuation byte [MQTT-1.5.4-1]
		0, // options
	),
	mal("SubscribeMalNoOptions", 4, MalformedPacket,
		0x82, 5, // SUBSCRIBE
		0, 1, // packet id
		0, 1, 'a', // filter without its options byte
	),
	mal("SubscribeMalQoS3", 4, MalformedPacket,
		0x82, 6, // SUBSCRIBE
		0, 1, // packet id
		0, 1, 'a', // filter
		0x03, // QoS 3 [MQTT-3.8.3-4]
	),
	mal("SubscribeMalReservedBitsMqtt311", 4, MalformedPacket,
		0x82, 6, // SUBSCRIBE
		0, 1, // packet id
		0, 1, 'a', // filter
		0x04, // bits 2-7 are reserved in 3.1.1
	),
	mal("SubscribeMalReservedBitsMqtt5", 5, MalformedPacket,
		0x82, 7, // SUBSCRIBE
		0, 1, // packet id
		0,         // property length
		0, 1, 'a', // filter
		0x40, // bits 6-7 are reserved [MQTT-3.8.3-5]
	),
	mal("SubscribeMalRetainHandling3", 5, MalformedPacket,
		0x82, 7, // SUBSCRIBE
		0, 1, // packet id
		0,         // property length
		0, 1, 'a', // filter
		0x30, // retain handling 3
	),
	mal("SubscribeMalNoLocalShared", 5, ProtocolError,
		0x82, 16, // SUBSCRIBE
		0, 1, // packet id
		0,                                                       // property length
		0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', // shared filter
		0x04, // no local [MQTT-3.8.3-4]
	),
	mal("SubscribeMalSharedNoFilter", 5, MalformedPacket,
		0x82, 14, // SUBSCRIBE
		0, 1, // packet id
		0,                                            // property length
		0, 8, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', // no topic filter after the share name [MQTT-4.8.2-2]
		0, // options
	),
	mal("SubscribeMalSubscriptionIDTwice", 5, MalformedPacket,
		0x82, 11, // SUBSCRIBE
		0, 1, // packet id
		4,       // property length
		0x0b, 1, // subscription identifier
		0x0b, 2, // again: at most one in SUBSCRIBE
		0, 1, 'a', // filter
		0, // options
	),
	mal("SubscribeMalSubscriptionID0", 5, MalformedPacket,
		0x82, 9, // SUBSCRIBE
		0, 1, // packet id
		2,       // property length
		0x0b, 0, // subscription identifier 0
		0, 1, 'a', // filter
		0, // options
	),
	mal("UnsubscribeMalFilterHashNotLast", 4, MalformedPacket,
		0xa2, 7, // UNSUBSCRIBE
		0, 1, // packet id
		0, 3, '#', '/', 'a', // '#' not last [MQTT-4.7.1-1]
	),
	mal("SubackMalNoReasonCodes", 4, ProtocolError, 0x90, 2, 0, 1),
	mal("SubackMalReasonCodeMqtt311", 4, ProtocolError, 0x90, 3, 0, 1, 0x03),
	mal("SubackMalReasonCodeMqtt5", 5, ProtocolError,
		0x90, 4, // SUBACK
		0, 1, // packet id
		0,    // property length
		0x92, // not a SUBACK reason code
	),
	mal("UnsubackMalMqtt311Payload", 4, MalformedPacket, 0xb0, 3, 0, 1, 0), // no payload before 5.0
	mal("UnsubackMalNoReasonCodes", 5, ProtocolError,
		0xb0, 3, // UNSUBACK
		0, 1, // packet id
		0, // property length; no reason codes
	),

	// CONNECT.
	mal("ConnectMalProtocolName", 0, UnsupportedProtocolVersion,
		0x10, 15, // CONNECT
		0, 4, 'M', 'Q', 'T', 'X', // wrong protocol name [MQTT-3.1.2-1]
		4, 0x02, 0, 60, 0, 3, 'z', 'e', 'n', // level, flags, keep alive, client id
	),
	mal("ConnectMalProtocolLevel6", 0, UnsupportedProtocolVersion,
		0x10, 15, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		6,                                // unknown level [MQTT-3.1.2-2]
		0x02, 0, 60, 0, 3, 'z', 'e', 'n', // flags, keep alive, client id
	),
	mal("ConnectMalMQIsdpLevel4", 0, UnsupportedProtocolVersion,
		0x10, 17, // CONNECT
		0, 6, 'M', 'Q', 'I', 's', 'd', 'p', // 3.1 name
		4,                                // with the 3.1.1 level
		0x02, 0, 60, 0, 3, 'z', 'e', 'n', // flags, keep alive, client id
	),
	mal("ConnectMalReservedFlag", 0, MalformedPacket,
		0x10, 15, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name, level
		0x03,                       // flags: reserved bit set [MQTT-3.1.2-3]
		0, 60, 0, 3, 'z', 'e', 'n', // keep alive, client id
	),
	mal("ConnectMalWillQoSWithoutWill", 0, MalformedPacket,
		0x10, 15, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name, level
		0x0a,                       // flags: will QoS 1 without will flag [MQTT-3.1.2-11, MQTT-3.1.2-13]
		0, 60, 0, 3, 'z', 'e', 'n', // keep alive, client id
	),
	mal("ConnectMalWillRetainWithoutWill", 0, MalformedPacket,
		0x10, 15, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name, level
		0x22,                       // flags: will retain without will flag [MQTT-3.1.2-15]
		0, 60, 0, 3, 'z', 'e', 'n', // keep alive, client id
	),
	mal("ConnectMalWillQoS3", 0, MalformedPacket,
		0x10, 23, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name, level
		0x1e,                       // flags: will QoS 3, will, clean session [MQTT-3.1.2-14]
		0, 60, 0, 3, 'z', 'e', 'n', // keep alive, client id
		0, 1, 'w', 0, 3, 'b', 'y', 'e', // will topic, will payload
	),
	mal("ConnectMalPasswordWithoutUsernameMqtt311", 0, MalformedPacket,
		0x10, 21, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name, level
		0x42,                       // flags: password without username [MQTT-3.1.2-22]
		0, 60, 0, 3, 'z', 'e', 'n', // keep alive, client id
		0, 4, 'p', 'a', 's', 's', // password
	),
	mal("ConnectMalClientIDOverlongNull", 0, MalformedPacket,
		0x10, 14, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, // protocol name, level, flags, keep alive
		0, 2, 0xc0, 0x80, // client id: overlong U+0000 [MQTT-1.5.4-1]
	),
	mal("ConnectMalUsernameInvalidUTF8", 0, MalformedPacket,
		0x10, 18, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name, level
		0x82,                       // flags: username, clean session
		0, 60, 0, 3, 'z', 'e', 'n', // keep alive, client id
		0, 1, 0xfe, // username: 0xfe never occurs in UTF-8 [MQTT-1.5.4-1]
	),
	mal("ConnectMalWillTopicWildcard", 0, TopicNameInvalid,
		0x10, 22, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name, level
		0x06,                       // flags: will, clean session
		0, 60, 0, 3, 'z', 'e', 'n', // keep alive, client id
		0, 3, 'a', '/', '#', // will topic with a wildcard
		0, 0, // will payload
	),
	mal("ConnectMalMissingClientID", 0, MalformedPacket,
		0x10, 10, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, // protocol name, level, flags, keep alive; nothing more
	),
	mal("ConnectMalTrailingBytes", 0, MalformedPacket,
		0x10, 16, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, // protocol name, level, flags, keep alive
		0, 3, 'z', 'e', 'n', // client id
		0xff, // more than the flags announce
	),
	mal("ConnectMalReceiveMaximum0", 0, ProtocolError,
		0x10, 19, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, // protocol name, level, flags, keep alive
		3,          // property length
		0x21, 0, 0, // receive maximum 0
		0, 3, 'z', 'e', 'n', // client id
	),
	mal("ConnectMalMaximumPacketSize0", 0, ProtocolError,
		0x10, 21, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, // protocol name, level, flags, keep alive
		5,                // property length
		0x27, 0, 0, 0, 0, // maximum packet size 0
		0, 3, 'z', 'e', 'n', // client id
	),
	mal("ConnectMalRequestProblemInfo2", 0, ProtocolError,
		0x10, 18, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, // protocol name, level, flags, keep alive
		2,       // property length
		0x17, 2, // request problem information 2
		0, 3, 'z', 'e', 'n', // client id
	),
	mal("ConnectMalAuthDataWithoutMethod", 0, ProtocolError,
		0x10, 20, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, // protocol name, level, flags, keep alive
		4,             // property length
		0x16, 0, 1, 1, // authentication data without a method
		0, 3, 'z', 'e', 'n', // client id
	),
	mal("ConnectMalWillPropNotAllowed", 0, MalformedPacket,
		0x10, 27, // CONNECT
		0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 60, // protocol name, level, flags (will), keep alive
		0,                   // property length
		0, 3, 'z', 'e', 'n', // client id
		5,                // will property length
		0x11, 0, 0, 0, 1, // session expiry interval is no will property
		0, 1, 'w', 0, 0, // will topic, will payload
	),

	// CONNACK and DISCONNECT.
	mal("ConnackMalFlags", 4, MalformedPacket, 0x20, 2, 0x02, 0),     // [MQTT-3.2.2-1]
	mal("ConnackMalReturnCode6", 4, ProtocolError, 0x20, 2, 0x00, 6), // 3.1.1 return codes end at 5
	mal("ConnackMalReasonCode", 5, ProtocolError, 0x20, 3, 0x00, 0x10, 0),
	mal("DisconnectMalMqtt311Payload", 4, MalformedPacket, 0xe0, 1, 0),
	mal("DisconnectMalReasonCode", 5, ProtocolError, 0xe0, 1, 0x05),
	mal("AuthMalReasonCode", 5, ProtocolError, 0xf0, 1, 0x87),
}

// ServerVector is input a server refuses from the start of a fixed header
// (Decoder.ServerFrame), before the body: Early is how many bytes of Raw it
// takes (fewer are incomplete); the rest of Raw is what a client might send
// after them, which is never waited for.
type ServerVector struct {
	Name          string
	Version       byte // the connection's protocol level (0: no CONNECT yet)
	Connected     bool // a CONNECT was accepted
	Raw           []byte
	Early         int
	Reason        byte // the *Error's reason (v5 DISCONNECT, when connected)
	MaxPacketSize int
}

// ServerVectors are the fixed headers a server refuses early.
var ServerVectors = []ServerVector{
	// Before CONNECT: only CONNECT may come [MQTT-3.1.0-1].
	{Name: "FirstReservedType0", Raw: []byte{0x00, 0xff, 0xff, 0xff, 0x7f}, Early: 1, Reason: ProtocolError},
	{Name: "FirstPublish", Raw: []byte{0x30, 0x05, 0, 1, 'a', 'h', 'i'}, Early: 1, Reason: ProtocolError},
	{Name: "FirstPingreq", Raw: []byte{0xc0, 0x00}, Early: 1, Reason: ProtocolError},
	{Name: "FirstAuth", Raw: []byte{0xf0, 0x02, 0x18, 0x00}, Early: 1, Reason: ProtocolError}, // no method: nothing to continue
	{Name: "FirstDisconnect", Raw: []byte{0xe0, 0x00}, Early: 1, Reason: ProtocolError},
	{Name: "FirstConnectFlags", Raw: []byte{0x12, 0x0a, 0, 4, 'M', 'Q', 'T', 'T'}, Early: 1, Reason: MalformedPacket}, // [MQTT-2.1.3-1]
	{Name: "FirstConnectTooLarge", Raw: []byte{
		0x10,             // CONNECT
		0x80, 0x80, 0x24, // remaining length 589,824: over MaxConnectSize
		0, 4, 'M', 'Q', 'T', 'T'}, Early: 4, Reason: PacketTooLarge},
	{Name: "FirstConnectOverMaxPacketSize", MaxPacketSize: 100, Raw: []byte{
		0x10, 0x80, 0x01, // CONNECT, remaining length 128
		0, 4, 'M', 'Q', 'T', 'T'}, Early: 3, Reason: PacketTooLarge},

	// After CONNECT.
	{Name: "ReservedType0", Version: Version311, Connected: true, Raw: []byte{0x00, 0xff, 0xff, 0xff, 0x7f}, Early: 1, Reason: MalformedPacket},
	{Name: "ReservedType0Mqtt5", Version: Version5, Connected: true, Raw: []byte{0x00, 0x10, 1, 2, 3}, Early: 1, Reason: MalformedPacket},
	{Name: "AuthMqtt311", Version: Version311, Connected: true, Raw: []byte{0xf0, 0x00}, Early: 1, Reason: MalformedPacket},
	{Name: "PublishQoS3", Version: Version5, Connected: true, Raw: []byte{0x36, 0xff, 0x7f}, Early: 1, Reason: MalformedPacket},
	{Name: "PubackFlags", Version: Version5, Connected: true, Raw: []byte{0x42, 0x02, 0, 1}, Early: 1, Reason: MalformedPacket},
	{Name: "SecondConnect", Version: Version5, Connected: true, Raw: []byte{0x10, 0xff, 0x7f}, Early: 1, Reason: ProtocolError}, // [MQTT-3.1.0-2]
	{Name: "ConnackFromClient", Version: Version5, Connected: true, Raw: []byte{0x20, 0x03, 0, 0, 0}, Early: 1, Reason: ProtocolError},
	{Name: "SubackFromClient", Version: Version311, Connected: true, Raw: []byte{0x90, 0x03, 0, 1, 0}, Early: 1, Reason: ProtocolError},
	{Name: "PingrespFromClient", Version: Version311, Connected: true, Raw: []byte{0xd0, 0x00}, Early: 1, Reason: ProtocolError},
	{Name: "PublishOverMaxPacketSize", Version: Version5, Connected: true, MaxPacketSize: 100, Raw: []byte{
		0x30, 0x80, 0x01, // PUBLISH, remaining length 128
		0, 1, 'a'}, Early: 3, Reason: PacketTooLarge},
}
