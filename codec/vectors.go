package codec

import (
	"strings"
	"sync"
)

// Vector is one test case of the codec: raw bytes and the packet they carry
// (or, for invalid input, the reason the decoder must give). The broker's
// and client's tests reuse this table for exact bytes.
type Vector struct {
	Name    string // intent: "ConnectMqtt311", "PublishMqtt5QoS1Props", "ConnectMalProtocolName"
	Version byte   // decoder/encoder protocol level (0 for CONNECT: taken from the packet)
	Raw     []byte // the frame, commented field by field
	Packet  Packet // decoded value (valid vectors)
	Reason  byte   // invalid vectors: the expected *Error.Reason
	Invalid bool

	// EncodeOnly and DecodeOnly restrict a vector to one direction: input
	// the decoder accepts but the encoder writes differently, or packets the
	// encoder normalizes.
	EncodeOnly, DecodeOnly bool

	MaxPacketSize int // the decoder's limit, for vectors that test it
}

// Vectors returns every test case: each packet type at each protocol level
// (3.1.1 and 5.0 here and in vectors_v5.go; 3.1 copies of the 3.1.1
// non-CONNECT vectors are added, since 3.1 differs only in CONNECT), every
// v5 property at least once, and malformed input (vectors_mal.go). The
// table is built on first use, not at init: the broker never uses it, and
// building it cost every process ~330 KiB of heap at start.
var Vectors = sync.OnceValue(func() []Vector {
	var vs []Vector
	vs = append(vs, vectors311...)
	vs = append(vs, vectors5...)
	vs = append(vs, vectorsMalformed...)
	for _, v := range vs {
		if v.Version != Version311 || v.Packet.Type == CONNECT {
			continue
		}
		v.Version = Version31
		if strings.Contains(v.Name, "Mqtt311") {
			v.Name = strings.Replace(v.Name, "Mqtt311", "Mqtt31", 1)
		} else {
			v.Name += "Mqtt31"
		}
		vs = append(vs, v)
	}
	return vs
})

// VectorByName returns the vector called name, or false.
func VectorByName(name string) (Vector, bool) {
	for _, v := range Vectors() {
		if v.Name == name {
			return v, true
		}
	}
	return Vector{}, false
}

var vectors311 = []Vector{
	{Name: "ConnectMqtt311", Raw: []byte{
		0x10, 15, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4,     // protocol level 3.1.1
		0x02,  // flags: clean session
		0, 60, // keep alive 60 s
		0, 3, 'z', 'e', 'n', // client id
	}, Packet: Packet{Type: CONNECT, Connect: Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4,
		CleanStart: true, KeepAlive: 60, ClientID: []byte("zen")}}},
	{Name: "ConnectMqtt311Bridge", Raw: []byte{
		0x10, 15, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		0x84,  // protocol level 3.1.1 with mosquitto's bridge bit (try_private)
		0x02,  // flags: clean session
		0, 60, // keep alive 60 s
		0, 3, 'z', 'e', 'n', // client id
	}, Packet: Packet{Type: CONNECT, Connect: Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, Bridge: true,
		CleanStart: true, KeepAlive: 60, ClientID: []byte("zen")}}},
	{Name: "ConnectMqtt311WillUserPass", Raw: []byte{
		0x10, 37, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4,     // protocol level 3.1.1
		0xee,  // flags: username, password, will retain, will QoS 1, will, clean session
		0, 30, // keep alive
		0, 3, 'z', 'e', 'n', // client id
		0, 3, 'l', 'w', 't', // will topic
		0, 3, 'b', 'y', 'e', // will payload
		0, 4, 'u', 's', 'e', 'r', // username
		0, 4, 'p', 'a', 's', 's', // password
	}, Packet: Packet{Type: CONNECT, Connect: Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4,
		CleanStart: true, KeepAlive: 30, ClientID: []byte("zen"),
		WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: []byte("lwt"), WillPayload: []byte("bye"),
		UsernameFlag: true, Username: []byte("user"), PasswordFlag: true, Password: []byte("pass")}}},
	{Name: "ConnectMqtt311EmptyClientID", Raw: []byte{
		0x10, 12, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4,    // protocol level 3.1.1
		0x02, // flags: clean session
		0, 0, // keep alive 0: off
		0, 0, // client id "": the server assigns one [MQTT-3.1.3-6]
	}, Packet: Packet{Type: CONNECT, Connect: Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4,
		CleanStart: true, ClientID: []byte{}}}},
	{Name: "ConnectMqtt31", Raw: []byte{
		0x10, 17, // CONNECT, remaining length
		0, 6, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name of 3.1
		3,     // protocol level 3.1
		0x02,  // flags: clean session
		0, 60, // keep alive
		0, 3, 'z', 'e', 'n', // client id
	}, Packet: Packet{Type: CONNECT, Connect: Connect{ProtocolName: []byte("MQIsdp"), ProtocolLevel: 3,
		CleanStart: true, KeepAlive: 60, ClientID: []byte("zen")}}},
	{Name: "ConnectMqtt31UserPass", Raw: []byte{
		0x10, 29, // CONNECT, remaining length
		0, 6, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name of 3.1
		3,     // protocol level 3.1
		0xc0,  // flags: username, password; persistent session
		0, 10, // keep alive
		0, 3, 'z', 'e', 'n', // client id
		0, 4, 'u', 's', 'e', 'r', // username
		0, 4, 'p', 'a', 's', 's', // password
	}, Packet: Packet{Type: CONNECT, Connect: Connect{ProtocolName: []byte("MQIsdp"), ProtocolLevel: 3,
		KeepAlive: 10, ClientID: []byte("zen"),
		UsernameFlag: true, Username: []byte("user"), PasswordFlag: true, Password: []byte("pass")}}},

	{Name: "ConnackMqtt311Accepted", Version: 4, Raw: []byte{
		0x20, 2, // CONNACK, remaining length
		0x00, // acknowledge flags: no session present
		0x00, // return code: accepted
	}, Packet: Packet{Type: CONNACK}},
	{Name: "ConnackMqtt311SessionPresent", Version: 4, Raw: []byte{
		0x20, 2, // CONNACK, remaining length
		0x01, // acknowledge flags: session present
		0x00, // return code: accepted
	}, Packet: Packet{Type: CONNACK, SessionPresent: true}},
	{Name: "ConnackMqtt311NotAuthorized", Version: 4, Raw: []byte{
		0x20, 2, // CONNACK, remaining length
		0x00, // acknowledge flags
		0x05, // return code: not authorized
	}, Packet: Packet{Type: CONNACK, ReasonCode: ConnRefusedNotAuthorized}},

	{Name: "PublishMqtt311QoS0", Version: 4, Raw: []byte{
		0x30, 10, // PUBLISH QoS 0, remaining length
		0, 3, 'a', '/', 'b', // topic
		'h', 'e', 'l', 'l', 'o', // payload
	}, Packet: Packet{Type: PUBLISH, Topic: []byte("a/b"), Payload: []byte("hello")}},
	{Name: "PublishMqtt311QoS1Retain", Version: 4, Raw: []byte{
		0x33, 12, // PUBLISH QoS 1 retain, remaining length
		0, 3, 'a', '/', 'b', // topic
		0, 7, // packet id
		'h', 'e', 'l', 'l', 'o', // payload
	}, Packet: Packet{Type: PUBLISH, Flags: 0x03, QoS: 1, Retain: true, Topic: []byte("a/b"), PacketID: 7,
		Payload: []byte("hello")}},
	{Name: "PublishMqtt311QoS2Dup", Version: 4, Raw: []byte{
		0x3c, 12, // PUBLISH DUP QoS 2, remaining length
		0, 3, 'a', '/', 'b', // topic
		0, 8, // packet id
		'h', 'e', 'l', 'l', 'o', // payload
	}, Packet: Packet{Type: PUBLISH, Flags: 0x0c, Dup: true, QoS: 2, Topic: []byte("a/b"), PacketID: 8,
		Payload: []byte("hello")}},
	{Name: "PublishMqtt311RetainEmptyPayload", Version: 4, Raw: []byte{
		0x31, 5, // PUBLISH QoS 0 retain, remaining length
		0, 3, 'a', '/', 'b', // topic; no payload: clears the retained message
	}, Packet: Packet{Type: PUBLISH, Flags: 0x01, Retain: true, Topic: []byte("a/b")}},
	{Name: "PublishMqtt311UTF8Topic", Version: 4, Raw: []byte{
		0x30, 8, // PUBLISH QoS 0, remaining length
		0, 6, 0xc3, 0xa9, '/', 0xe2, 0x82, 0xac, // topic "é/€"
	}, Packet: Packet{Type: PUBLISH, Topic: []byte("é/€")}},

	{Name: "PubackMqtt311", Version: 4, Raw: []byte{
		0x40, 2, // PUBACK, remaining length
		0, 7, // packet id
	}, Packet: Packet{Type: PUBACK, PacketID: 7}},
	{Name: "PubrecMqtt311", Version: 4, Raw: []byte{
		0x50, 2, // PUBREC, remaining length
		0, 8, // packet id
	}, Packet: Packet{Type: PUBREC, PacketID: 8}},
	{Name: "PubrelMqtt311", Version: 4, Raw: []byte{
		0x62, 2, // PUBREL (flags 0010), remaining length
		0, 8, // packet id
	}, Packet: Packet{Type: PUBREL, Flags: 2, PacketID: 8}},
	{Name: "PubcompMqtt311", Version: 4, Raw: []byte{
		0x70, 2, // PUBCOMP, remaining length
		0xff, 0xff, // packet id 65535
	}, Packet: Packet{Type: PUBCOMP, PacketID: 65535}},

	{Name: "SubscribeMqtt311", Version: 4, Raw: []byte{
		0x82, 18, // SUBSCRIBE (flags 0010), remaining length
		0, 1, // packet id
		0, 3, 'a', '/', 'b', // filter
		0x00,                // QoS 0
		0, 3, 'c', '/', '+', // filter
		0x01,      // QoS 1
		0, 1, '#', // filter
		0x02, // QoS 2
	}, Packet: Packet{Type: SUBSCRIBE, Flags: 2, PacketID: 1, Subscriptions: []Subscription{
		{Filter: []byte("a/b")}, {Filter: []byte("c/+"), QoS: 1}, {Filter: []byte("#"), QoS: 2}}}},
	{Name: "SubackMqtt311", Version: 4, Raw: []byte{
		0x90, 5, // SUBACK, remaining length
		0, 1, // packet id
		0x00, 0x01, 0x80, // granted QoS 0, granted QoS 1, failure
	}, Packet: Packet{Type: SUBACK, PacketID: 1, ReasonCodes: []byte{0, 1, 0x80}}},
	{Name: "UnsubscribeMqtt311", Version: 4, Raw: []byte{
		0xa2, 12, // UNSUBSCRIBE (flags 0010), remaining length
		0, 2, // packet id
		0, 3, 'a', '/', 'b', // filter
		0, 3, 'c', '/', '+', // filter
	}, Packet: Packet{Type: UNSUBSCRIBE, Flags: 2, PacketID: 2, Filters: [][]byte{[]byte("a/b"), []byte("c/+")}}},
	{Name: "UnsubackMqtt311", Version: 4, Raw: []byte{
		0xb0, 2, // UNSUBACK, remaining length
		0, 2, // packet id; no payload before 5.0
	}, Packet: Packet{Type: UNSUBACK, PacketID: 2}},
	{Name: "UnsubackMqtt311DropsReasonCodes", Version: 4, EncodeOnly: true, Raw: []byte{
		0xb0, 2, // UNSUBACK, remaining length
		0, 2, // packet id; 5.0 reason codes are not carried
	}, Packet: Packet{Type: UNSUBACK, PacketID: 2, ReasonCodes: []byte{0x11}}},

	{Name: "PingreqMqtt311", Version: 4, Raw: []byte{0xc0, 0}, Packet: Packet{Type: PINGREQ}},
	{Name: "PingrespMqtt311", Version: 4, Raw: []byte{0xd0, 0}, Packet: Packet{Type: PINGRESP}},
	{Name: "DisconnectMqtt311", Version: 4, Raw: []byte{0xe0, 0}, Packet: Packet{Type: DISCONNECT}},
	{Name: "DisconnectMqtt311DropsReason", Version: 4, EncodeOnly: true, Raw: []byte{
		0xe0, 0, // DISCONNECT: 3.1.1 carries no reason code
	}, Packet: Packet{Type: DISCONNECT, ReasonCode: DisconnectWithWill}},
}
