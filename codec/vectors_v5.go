package codec

// Shared values of the 5.0 vectors (read-only).
var (
	userKV  = []UserProperty{{Key: []byte("k"), Value: []byte("v")}}
	userKVW = []UserProperty{{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("k"), Value: []byte("w")}}
)

// props returns p with the single-valued properties ids marked present.
func props(p Properties, ids ...byte) Properties {
	for _, id := range ids {
		p.Set(id)
	}
	return p
}

var vectors5 = []Vector{
	{Name: "ConnectMqtt5", Raw: []byte{
		0x10, 16, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		5,     // protocol level 5.0
		0x02,  // flags: clean start
		0, 60, // keep alive
		0,                   // property length
		0, 3, 'z', 'e', 'n', // client id
	}, Packet: Packet{Type: CONNECT, Connect: Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 5,
		CleanStart: true, KeepAlive: 60, ClientID: []byte("zen")}}},
	{Name: "ConnectMqtt5PropsWill", Raw: []byte{
		0x10, 113, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		5,     // protocol level 5.0
		0xd6,  // flags: username, password, will QoS 2, will, clean start
		0, 30, // keep alive
		40,                 // property length
		0x11, 0, 0, 0, 120, // session expiry interval 120 s
		0x15, 0, 5, 'S', 'C', 'R', 'A', 'M', // authentication method
		0x16, 0, 2, 1, 2, // authentication data
		0x17, 1, // request problem information
		0x19, 1, // request response information
		0x21, 0, 10, // receive maximum
		0x22, 0, 5, // topic alias maximum
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0x27, 0, 0, 0x10, 0, // maximum packet size 4096
		0, 3, 'z', 'e', 'n', // client id
		34,      // will property length
		0x01, 1, // payload format: UTF-8
		0x03, 0, 4, 't', 'e', 'x', 't', // content type
		0x08, 0, 1, 'r', // response topic
		0x09, 0, 1, 9, // correlation data
		0x18, 0, 0, 0, 5, // will delay interval
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0x02, 0, 0, 0, 30, // message expiry interval, written last as mosquitto does
		0, 3, 'l', 'w', 't', // will topic
		0, 3, 'b', 'y', 'e', // will payload
		0, 4, 'u', 's', 'e', 'r', // username
		0, 4, 'p', 'a', 's', 's', // password
	}, Packet: Packet{Type: CONNECT,
		Props: props(Properties{SessionExpiry: 120, AuthMethod: []byte("SCRAM"), AuthData: []byte{1, 2},
			RequestProblemInfo: 1, RequestResponseInfo: 1, ReceiveMaximum: 10, TopicAliasMaximum: 5,
			User: userKV, MaximumPacketSize: 4096},
			PropSessionExpiry, PropAuthMethod, PropAuthData, PropRequestProblemInfo, PropRequestResponseInfo,
			PropReceiveMaximum, PropTopicAliasMaximum, PropMaximumPacketSize),
		Connect: Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 5, CleanStart: true, KeepAlive: 30,
			ClientID: []byte("zen"), WillFlag: true, WillQoS: 2,
			WillProps: props(Properties{PayloadFormat: 1, MessageExpiry: 30, ContentType: []byte("text"),
				ResponseTopic: []byte("r"), CorrelationData: []byte{9}, WillDelay: 5, User: userKV,
				Order: []byte{PropPayloadFormat, PropContentType, PropResponseTopic, PropCorrelationData,
					PropWillDelay, PropUserProperty, PropMessageExpiry}},
				PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic, PropCorrelationData,
				PropWillDelay),
			WillTopic: []byte("lwt"), WillPayload: []byte("bye"),
			UsernameFlag: true, Username: []byte("user"), PasswordFlag: true, Password: []byte("pass")}}},
	{Name: "ConnectMqtt5PasswordOnly", Raw: []byte{
		0x10, 22, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		5,     // protocol level 5.0
		0x42,  // flags: password without username, allowed in 5.0; clean start
		0, 60, // keep alive
		0,                   // property length
		0, 3, 'z', 'e', 'n', // client id
		0, 4, 'p', 'a', 's', 's', // password
	}, Packet: Packet{Type: CONNECT, Connect: Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 5,
		CleanStart: true, KeepAlive: 60, ClientID: []byte("zen"), PasswordFlag: true, Password: []byte("pass")}}},

	{Name: "ConnackMqtt5", Version: 5, Raw: []byte{
		0x20, 3, // CONNACK, remaining length
		0x00, // acknowledge flags
		0x00, // reason code: success
		0,    // property length
	}, Packet: Packet{Type: CONNACK}},
	{Name: "ConnackMqtt5NoPropertyLength", Version: 5, DecodeOnly: true, Raw: []byte{
		0x20, 2, // CONNACK, remaining length
		0x00, // acknowledge flags
		0x00, // reason code; the property length is missing, read as none
	}, Packet: Packet{Type: CONNACK}},
	{Name: "ConnackMqtt5BadCredentials", Version: 5, Raw: []byte{
		0x20, 3, // CONNACK, remaining length
		0x00, // acknowledge flags
		0x86, // reason code: bad user name or password
		0,    // property length
	}, Packet: Packet{Type: CONNACK, ReasonCode: BadUsernameOrPassword}},
	{Name: "ConnackMqtt5Props", Version: 5, Raw: []byte{
		0x20, 76, // CONNACK, remaining length
		0x01, // acknowledge flags: session present
		0x00, // reason code: success
		73,   // property length
		// mosquitto's order first (what it adds when the client is
		// authorised, then when sending), then by identifier
		0x22, 0, 8, // topic alias maximum
		0x13, 0, 30, // server keep alive
		0x12, 0, 4, 'a', 'u', 't', 'o', // assigned client identifier
		0x15, 0, 5, 'S', 'C', 'R', 'A', 'M', // authentication method
		0x16, 0, 1, 7, // authentication data
		0x25, 0, // retain available: no
		0x27, 0, 0, 0x40, 0, // maximum packet size 16384
		0x21, 0, 20, // receive maximum
		0x24, 1, // maximum QoS
		0x11, 0, 0, 0, 60, // session expiry interval
		0x1a, 0, 4, 'i', 'n', 'f', 'o', // response information
		0x1c, 0, 3, 's', 'r', 'v', // server reference
		0x1f, 0, 2, 'o', 'k', // reason string
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0x28, 1, // wildcard subscription available
		0x29, 1, // subscription identifiers available
		0x2a, 0, // shared subscription available: no
	}, Packet: Packet{Type: CONNACK, SessionPresent: true,
		Props: props(Properties{SessionExpiry: 60, AssignedClientID: []byte("auto"), ServerKeepAlive: 30,
			AuthMethod: []byte("SCRAM"), AuthData: []byte{7}, ResponseInfo: []byte("info"),
			ServerReference: []byte("srv"), ReasonString: []byte("ok"), ReceiveMaximum: 20,
			TopicAliasMaximum: 8, MaximumQoS: 1, User: userKV, MaximumPacketSize: 16384,
			WildcardSubAvailable: 1, SubIDAvailable: 1},
			PropSessionExpiry, PropAssignedClientID, PropServerKeepAlive, PropAuthMethod, PropAuthData,
			PropResponseInfo, PropServerReference, PropReasonString, PropReceiveMaximum,
			PropTopicAliasMaximum, PropMaximumQoS, PropRetainAvailable, PropMaximumPacketSize,
			PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable)}},

	{Name: "PublishMqtt5QoS0", Version: 5, Raw: []byte{
		0x30, 11, // PUBLISH QoS 0, remaining length
		0, 3, 'a', '/', 'b', // topic
		0,                       // property length
		'h', 'e', 'l', 'l', 'o', // payload
	}, Packet: Packet{Type: PUBLISH, Topic: []byte("a/b"), Payload: []byte("hello")}},
	{Name: "PublishMqtt5QoS1Props", Version: 5, Raw: []byte{
		0x32, 60, // PUBLISH QoS 1, remaining length
		0, 3, 'a', '/', 'b', // topic
		0, 7, // packet id
		47, // property length
		// the delivery's own first, the publisher's in its order,
		// the recomputed expiry last (mosquitto's order)
		0x0b, 0xac, 0x02, // subscription identifier 300
		0x0b, 5, // subscription identifier 5
		0x01, 1, // payload format: UTF-8
		0x03, 0, 4, 'j', 's', 'o', 'n', // content type
		0x08, 0, 3, 'r', '/', '1', // response topic
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0x09, 0, 2, 0xab, 0xcd, // correlation data
		0x23, 0, 3, // topic alias
		0x26, 0, 1, 'k', 0, 1, 'w', // user property, same key again
		0x02, 0, 0, 0, 30, // message expiry interval
		'h', 'e', 'l', 'l', 'o', // payload
	}, Packet: Packet{Type: PUBLISH, Flags: 0x02, QoS: 1, Topic: []byte("a/b"), PacketID: 7,
		Props: props(Properties{PayloadFormat: 1, MessageExpiry: 30, ContentType: []byte("json"),
			ResponseTopic: []byte("r/1"), CorrelationData: []byte{0xab, 0xcd}, SubscriptionIDs: []uint32{300, 5},
			TopicAlias: 3, User: userKVW, Order: []byte{PropSubscriptionID, PropSubscriptionID, PropPayloadFormat,
				PropContentType, PropResponseTopic, PropUserProperty, PropCorrelationData, PropTopicAlias,
				PropUserProperty, PropMessageExpiry}},
			PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic, PropCorrelationData,
			PropTopicAlias),
		Payload: []byte("hello")}},
	{Name: "PublishMqtt5PayloadFormatUnknown", Version: 5, Raw: []byte{
		0x30, 6, // PUBLISH QoS 0, remaining length
		0, 1, 'a', // topic
		2,          // property length
		0x01, 0xed, // payload format 0xed: not one the spec defines, passed on as mosquitto does
	}, Packet: Packet{Type: PUBLISH, Topic: []byte("a"),
		Props: props(Properties{PayloadFormat: 0xed, Order: []byte{PropPayloadFormat}}, PropPayloadFormat)}},
	{Name: "PublishMqtt5PropsAnyOrder", Version: 5, DecodeOnly: true, Raw: []byte{
		0x30, 16, // PUBLISH QoS 0, remaining length
		0, 1, 'a', // topic
		12,         // property length
		0x23, 0, 3, // topic alias, before the lower identifier
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0x01, 0, // payload format: unspecified bytes
	}, Packet: Packet{Type: PUBLISH, Topic: []byte("a"),
		Props: props(Properties{TopicAlias: 3, User: userKV,
			Order: []byte{PropTopicAlias, PropUserProperty, PropPayloadFormat}}, PropTopicAlias, PropPayloadFormat)}},
	{Name: "PublishMqtt5TopicAliasEmptyTopic", Version: 5, Raw: []byte{
		0x30, 8, // PUBLISH QoS 0, remaining length
		0, 0, // empty topic: the alias names it [MQTT-3.3.2-1]
		3,          // property length
		0x23, 0, 3, // topic alias
		'h', 'i', // payload
	}, Packet: Packet{Type: PUBLISH, Topic: []byte{}, Props: props(Properties{TopicAlias: 3, Order: []byte{PropTopicAlias}}, PropTopicAlias),
		Payload: []byte("hi")}},
	{Name: "PublishMqtt5QoS2DupRetain", Version: 5, Raw: []byte{
		0x3d, 6, // PUBLISH DUP QoS 2 retain, remaining length
		0, 1, 'a', // topic
		0, 9, // packet id
		0, // property length; empty payload
	}, Packet: Packet{Type: PUBLISH, Flags: 0x0d, Dup: true, QoS: 2, Retain: true, Topic: []byte("a"),
		PacketID: 9}},

	{Name: "PubackMqtt5", Version: 5, Raw: []byte{
		0x40, 2, // PUBACK, remaining length: reason and properties left out
		0, 7, // packet id
	}, Packet: Packet{Type: PUBACK, PacketID: 7}},
	{Name: "PubackMqtt5ZeroPropertyLength", Version: 5, DecodeOnly: true, Raw: []byte{
		0x40, 4, // PUBACK, remaining length
		0, 7, // packet id
		0x00, // reason code: success
		0,    // property length
	}, Packet: Packet{Type: PUBACK, PacketID: 7}},
	{Name: "PubackMqtt5NoMatchingSubscribers", Version: 5, Raw: []byte{
		0x40, 3, // PUBACK, remaining length: properties left out
		0, 7, // packet id
		0x10, // reason code: no matching subscribers
	}, Packet: Packet{Type: PUBACK, PacketID: 7, ReasonCode: NoMatchingSubscribers}},
	{Name: "PubackMqtt5Props", Version: 5, Raw: []byte{
		0x40, 16, // PUBACK, remaining length
		0, 7, // packet id
		0x87,                 // reason code: not authorized
		12,                   // property length
		0x1f, 0, 2, 'n', 'o', // reason string
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
	}, Packet: Packet{Type: PUBACK, PacketID: 7, ReasonCode: NotAuthorized,
		Props: props(Properties{ReasonString: []byte("no"), User: userKV}, PropReasonString)}},
	{Name: "PubackMqtt5DropsDisallowedProps", Version: 5, EncodeOnly: true, Raw: []byte{
		0x40, 2, // PUBACK, remaining length: a topic alias is no PUBACK property
		0, 7, // packet id
	}, Packet: Packet{Type: PUBACK, PacketID: 7, Props: props(Properties{TopicAlias: 1}, PropTopicAlias)}},
	{Name: "PubrecMqtt5Props", Version: 5, Raw: []byte{
		0x50, 9, // PUBREC, remaining length
		0, 8, // packet id
		0x00,                 // reason code: success
		5,                    // property length
		0x1f, 0, 2, 'o', 'k', // reason string
	}, Packet: Packet{Type: PUBREC, PacketID: 8, Props: props(Properties{ReasonString: []byte("ok")}, PropReasonString)}},
	{Name: "PubrelMqtt5NotFound", Version: 5, Raw: []byte{
		0x62, 3, // PUBREL, remaining length
		0, 8, // packet id
		0x92, // reason code: packet identifier not found
	}, Packet: Packet{Type: PUBREL, Flags: 2, PacketID: 8, ReasonCode: PacketIdentifierNotFound}},
	{Name: "PubrelMqtt5", Version: 5, Raw: []byte{
		0x62, 2, // PUBREL, remaining length
		0, 8, // packet id
	}, Packet: Packet{Type: PUBREL, Flags: 2, PacketID: 8}},
	{Name: "PubcompMqtt5", Version: 5, Raw: []byte{
		0x70, 2, // PUBCOMP, remaining length
		0, 8, // packet id
	}, Packet: Packet{Type: PUBCOMP, PacketID: 8}},
	{Name: "PubcompMqtt5Props", Version: 5, Raw: []byte{
		0x70, 11, // PUBCOMP, remaining length
		0, 8, // packet id
		0x00,                       // reason code: success
		7,                          // property length
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
	}, Packet: Packet{Type: PUBCOMP, PacketID: 8, Props: Properties{User: userKV}}},

	{Name: "SubscribeMqtt5Props", Version: 5, Raw: []byte{
		0x82, 37, // SUBSCRIBE, remaining length
		0, 9, // packet id
		9,       // property length
		0x0b, 5, // subscription identifier
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0, 3, 'a', '/', 'b', // filter
		0x2d,                                                              // options: retain handling 2, retain as published, no local, QoS 1
		0, 12, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'c', '/', '#', // shared filter
		0x02,      // options: QoS 2
		0, 1, 'x', // filter
		0x10, // options: retain handling 1
	}, Packet: Packet{Type: SUBSCRIBE, Flags: 2, PacketID: 9,
		Props: Properties{SubscriptionIDs: []uint32{5}, User: userKV},
		Subscriptions: []Subscription{
			{Filter: []byte("a/b"), QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
			{Filter: []byte("$share/g/c/#"), QoS: 2},
			{Filter: []byte("x"), RetainHandling: 1}}}},
	{Name: "SubackMqtt5Props", Version: 5, Raw: []byte{
		0x90, 18, // SUBACK, remaining length
		0, 9, // packet id
		12,                   // property length
		0x1f, 0, 2, 'o', 'k', // reason string
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0x01, 0x02, 0x8f, // granted QoS 1, granted QoS 2, topic filter invalid
	}, Packet: Packet{Type: SUBACK, PacketID: 9,
		Props:       props(Properties{ReasonString: []byte("ok"), User: userKV}, PropReasonString),
		ReasonCodes: []byte{GrantedQoS1, GrantedQoS2, TopicFilterInvalid}}},
	{Name: "UnsubscribeMqtt5Props", Version: 5, Raw: []byte{
		0xa2, 15, // UNSUBSCRIBE, remaining length
		0, 4, // packet id
		7,                          // property length
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0, 3, 'a', '/', 'b', // filter
	}, Packet: Packet{Type: UNSUBSCRIBE, Flags: 2, PacketID: 4, Props: Properties{User: userKV},
		Filters: [][]byte{[]byte("a/b")}}},
	{Name: "UnsubackMqtt5", Version: 5, Raw: []byte{
		0xb0, 5, // UNSUBACK, remaining length
		0, 4, // packet id
		0,          // property length
		0x00, 0x11, // success, no subscription existed
	}, Packet: Packet{Type: UNSUBACK, PacketID: 4, ReasonCodes: []byte{Success, NoSubscriptionExisted}}},
	{Name: "UnsubackMqtt5Props", Version: 5, Raw: []byte{
		0xb0, 9, // UNSUBACK, remaining length
		0, 4, // packet id
		5,                    // property length
		0x1f, 0, 2, 'o', 'k', // reason string
		0x87, // not authorized
	}, Packet: Packet{Type: UNSUBACK, PacketID: 4,
		Props: props(Properties{ReasonString: []byte("ok")}, PropReasonString), ReasonCodes: []byte{NotAuthorized}}},

	{Name: "PingreqMqtt5", Version: 5, Raw: []byte{0xc0, 0}, Packet: Packet{Type: PINGREQ}},
	{Name: "PingrespMqtt5", Version: 5, Raw: []byte{0xd0, 0}, Packet: Packet{Type: PINGRESP}},
	{Name: "DisconnectMqtt5", Version: 5, Raw: []byte{
		0xe0, 0, // DISCONNECT, remaining length 0: normal disconnection
	}, Packet: Packet{Type: DISCONNECT}},
	{Name: "DisconnectMqtt5WithWill", Version: 5, Raw: []byte{
		0xe0, 1, // DISCONNECT, remaining length
		0x04, // reason code: disconnect with will message
	}, Packet: Packet{Type: DISCONNECT, ReasonCode: DisconnectWithWill}},
	{Name: "DisconnectMqtt5Props", Version: 5, Raw: []byte{
		0xe0, 27, // DISCONNECT, remaining length
		0x9c,             // reason code: use another server
		25,               // property length
		0x11, 0, 0, 0, 0, // session expiry interval
		0x1c, 0, 4, 's', 'r', 'v', '2', // server reference
		0x1f, 0, 3, 'b', 'y', 'e', // reason string
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
	}, Packet: Packet{Type: DISCONNECT, ReasonCode: UseAnotherServer,
		Props: props(Properties{ServerReference: []byte("srv2"), ReasonString: []byte("bye"), User: userKV},
			PropSessionExpiry, PropServerReference, PropReasonString)}},
	{Name: "AuthMqtt5", Version: 5, Raw: []byte{
		0xf0, 0, // AUTH, remaining length 0: success
	}, Packet: Packet{Type: AUTH}},
	{Name: "AuthMqtt5Props", Version: 5, Raw: []byte{
		0xf0, 27, // AUTH, remaining length
		0x18,                                // reason code: continue authentication
		25,                                  // property length
		0x15, 0, 5, 'S', 'C', 'R', 'A', 'M', // authentication method
		0x16, 0, 2, 1, 2, // authentication data
		0x1f, 0, 2, 'g', 'o', // reason string
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
	}, Packet: Packet{Type: AUTH, ReasonCode: ContinueAuthentication,
		Props: props(Properties{AuthMethod: []byte("SCRAM"), AuthData: []byte{1, 2}, ReasonString: []byte("go"),
			User: userKV}, PropAuthMethod, PropAuthData, PropReasonString)}},
}
