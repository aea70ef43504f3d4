package codec

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestFrameSize(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		max  int
		want int
		err  error
	}{
		{"Empty", nil, 0, 0, ErrIncomplete},
		{"TypeOnly", []byte{0x30}, 0, 0, ErrIncomplete},
		{"Zero", []byte{0xc0, 0}, 0, 2, nil},
		{"OneByteMax", []byte{0x30, 127}, 0, 129, nil},
		{"TwoBytes", []byte{0x30, 0x80, 0x01}, 0, 131, nil},
		{"TwoBytesIncomplete", []byte{0x30, 0x80}, 0, 0, ErrIncomplete},
		{"FourBytesMax", []byte{0x30, 0xff, 0xff, 0xff, 0x7f}, 0, MaxFrameSize, nil},
		{"FiveBytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, 0, 0, ErrMalformedLength},   // [MQTT-1.5.5]
		{"FourContinuations", []byte{0x30, 0x80, 0x80, 0x80, 0x80}, 0, 0, ErrMalformedLength}, // known before byte 6
		{"NotMinimal", []byte{0x30, 0x85, 0x00}, 0, 0, ErrMalformedLength},                    // [MQTT-1.5.5-1]
		{"AtMax", []byte{0x30, 98}, 100, 100, nil},
		{"OverMax", []byte{0x30, 99}, 100, 0, ErrPacketTooLarge},
		{"OverMaxBodyMissing", []byte{0x30, 0xff, 0x7f}, 1000, 0, ErrPacketTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FrameSize(tt.in, tt.max)
			if got != tt.want || err != tt.err {
				t.Fatalf("FrameSize(% x, %d) = %d, %v; want %d, %v", tt.in, tt.max, got, err, tt.want, tt.err)
			}
		})
	}
}

// TestDecodeBeforeConnect: with Version 0 a CONNECT sets the level and
// other packets are read as 3.1.1.
func TestDecodeBeforeConnect(t *testing.T) {
	var p Packet
	var d Decoder
	pub, _ := VectorByName("PublishMqtt311QoS1Retain")
	if _, err := d.Decode(pub.Raw, &p); err != nil || d.Version != 0 {
		t.Fatalf("PUBLISH before CONNECT: %v, version %d", err, d.Version)
	}
	conn, _ := VectorByName("ConnectMqtt5")
	if _, err := d.Decode(conn.Raw, &p); err != nil || d.Version != Version5 {
		t.Fatalf("CONNECT: %v, version %d", err, d.Version)
	}
	pub5, _ := VectorByName("PublishMqtt5QoS1Props")
	if _, err := d.Decode(pub5.Raw, &p); err != nil || !equalPackets(&p, &pub5.Packet) {
		t.Fatalf("5.0 PUBLISH after CONNECT: %v %s", err, describe(&p))
	}
}

// TestDecodeConnectErrorKeepsLevel: a refused CONNECT still tells the
// broker which protocol level to answer in, and leaves Version alone.
func TestDecodeConnectErrorKeepsLevel(t *testing.T) {
	tests := []struct {
		name  string
		level byte
	}{
		{"ConnectMalProtocolLevel6", 6},
		{"ConnectMalReceiveMaximum0", Version5},
		{"ConnectMalPasswordWithoutUsernameMqtt311", Version311},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := VectorByName(tt.name)
			if !ok {
				t.Fatal("no such vector")
			}
			var d Decoder
			var p Packet
			if _, err := d.Decode(v.Raw, &p); err == nil {
				t.Fatal("decoded")
			}
			if p.Connect.ProtocolLevel != tt.level || d.Version != 0 {
				t.Fatalf("level %d, decoder version %d; want %d, 0", p.Connect.ProtocolLevel, d.Version, tt.level)
			}
		})
	}
}

func TestProtocolNameErrorCodes(t *testing.T) {
	var e *Error
	if !errors.As(error(ErrProtocolName), &e) || e.Reason != 0x84 || e.ConnackV3 != 0x01 {
		t.Fatalf("ErrProtocolName = %+v; want v5 0x84, v3 CONNACK 0x01", e)
	}
}

// TestDecodeReusesPacket: decoding the same shape again into the same
// Packet allocates nothing.
func TestDecodeReusesPacket(t *testing.T) {
	for _, name := range []string{"PublishMqtt5QoS1Props", "SubscribeMqtt5Props", "UnsubscribeMqtt311",
		"SubackMqtt5Props", "ConnectMqtt5PropsWill", "ConnackMqtt5Props", "PublishMqtt311QoS0"} {
		t.Run(name, func(t *testing.T) {
			v, _ := VectorByName(name)
			var p Packet
			d := Decoder{Version: v.Version}
			if _, err := d.Decode(v.Raw, &p); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(100, func() {
				d.Version = v.Version
				if _, err := d.Decode(v.Raw, &p); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per decode", allocs)
			}
		})
	}
}

// TestEncodeNoAllocs: encoding into a buffer with room allocates nothing.
func TestEncodeNoAllocs(t *testing.T) {
	for _, v := range Vectors() {
		if v.Invalid || v.DecodeOnly {
			continue
		}
		buf := make([]byte, 0, 512)
		allocs := testing.AllocsPerRun(20, func() {
			buf = v.Packet.Encode(buf[:0], v.Version)
			buf = AppendPublishHeader(buf[:0], v.Version, &v.Packet)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per encode", v.Name, allocs)
		}
	}
}

// TestDecodedSlicesAreCapped: appending to a decoded field must not
// overwrite the bytes that follow it in the input.
func TestDecodedSlicesAreCapped(t *testing.T) {
	v, _ := VectorByName("PublishMqtt311QoS1Retain")
	raw := append([]byte(nil), v.Raw...)
	d := Decoder{Version: Version311}
	var p Packet
	if _, err := d.Decode(raw, &p); err != nil {
		t.Fatal(err)
	}
	_ = append(p.Topic, 'X')
	if string(raw) != string(v.Raw) {
		t.Fatalf("input changed: % x", raw)
	}
}

func TestValidTopicFilter(t *testing.T) {
	tests := []struct {
		filter string
		ok     bool
	}{
		{"a/b", true}, {"#", true}, {"+", true}, {"a/#", true}, {"+/+/#", true}, {"/", true}, {"a//b", true},
		{"", false},                                    // [MQTT-4.7.3-1]
		{"a/#/b", false}, {"a#", false}, {"#/", false}, // [MQTT-4.7.1-1]
		{"a+", false}, {"+a/b", false}, {"a/b+/c", false}, // [MQTT-4.7.1-2]
	}
	for _, tt := range tests {
		if got := ValidTopicFilter([]byte(tt.filter)); got != tt.ok {
			t.Errorf("ValidTopicFilter(%q) = %v, want %v", tt.filter, got, tt.ok)
		}
	}
}

func TestValidSharedFilter(t *testing.T) {
	tests := []struct {
		filter string
		ok     bool
	}{
		{"$share/g/a/b", true}, {"$share/g/#", true}, {"a/b", true}, {"$shared/x", true},
		{"$share/g", false}, {"$share//a", false}, {"$share/g/", false}, // [MQTT-4.8.2-1, MQTT-4.8.2-2]
		{"$share/g+/a", false}, {"$share/#/a", false}, {"$share/g/a#", false},
	}
	for _, tt := range tests {
		if got := ValidSharedFilter([]byte(tt.filter)); got != tt.ok {
			t.Errorf("ValidSharedFilter(%q) = %v, want %v", tt.filter, got, tt.ok)
		}
	}
}

func TestValidUTF8String(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"ASCII", "a/b", true},
		{"Multibyte", "é/€/𝄞", true},
		{"Empty", "", true},
		{"Null", "a\x00b", false},            // [MQTT-1.5.4-2]
		{"Surrogate", "\xed\xa0\x80", false}, // U+D800 [MQTT-1.5.4-1]
		{"Overlong", "\xc0\xaf", false},      // [MQTT-1.5.4-1]
		{"Truncated", "\xe2\x82", false},
		{"BeyondUnicode", "\xf4\x90\x80\x80", false},
	}
	for _, tt := range tests {
		if got := ValidUTF8String([]byte(tt.in)); got != tt.ok {
			t.Errorf("%s: ValidUTF8String(%q) = %v, want %v", tt.name, tt.in, got, tt.ok)
		}
	}
}

func TestValidTopicName(t *testing.T) {
	for in, ok := range map[string]bool{"a/b": true, "/": true, "": false, "a/+": false, "#": false} {
		if got := ValidTopicName([]byte(in)); got != ok {
			t.Errorf("ValidTopicName(%q) = %v, want %v", in, got, ok) // [MQTT-3.3.2-2, MQTT-4.7.3-1]
		}
	}
}

// TestDecodeTopicLevels: a topic name or filter may hold at most
// MaxTopicSlashes separators, as in mosquitto; more is a protocol error in a
// PUBLISH and malformed in a (UN)SUBSCRIBE (mosquitto's reasons).
func TestDecodeTopicLevels(t *testing.T) {
	levels := func(n int) []byte { return []byte(strings.Repeat("a/", n-1) + "a") }
	cases := []struct {
		name   string
		p      Packet
		reason byte // 0: accepted
	}{
		{"Publish201", Packet{Type: PUBLISH, Topic: levels(201)}, 0},
		{"Publish202", Packet{Type: PUBLISH, Topic: levels(202)}, ProtocolError},
		{"Subscribe201", Packet{Type: SUBSCRIBE, PacketID: 1, Subscriptions: []Subscription{{Filter: levels(201)}}}, 0},
		{"Subscribe202", Packet{Type: SUBSCRIBE, PacketID: 1, Subscriptions: []Subscription{{Filter: levels(202)}}}, MalformedPacket},
		{"Unsubscribe202", Packet{Type: UNSUBSCRIBE, PacketID: 1, Filters: [][]byte{levels(202)}}, MalformedPacket},
	}
	for _, c := range cases {
		for _, v := range []byte{Version311, Version5} {
			t.Run(fmt.Sprintf("%s/v%d", c.name, v), func(t *testing.T) {
				raw := c.p.Encode(nil, v)
				var p Packet
				_, err := (&Decoder{Version: v}).Decode(raw, &p)
				var e *Error
				switch {
				case c.reason == 0 && err != nil:
					t.Fatalf("Decode: %v", err)
				case c.reason != 0 && (!errors.As(err, &e) || e.Reason != c.reason):
					t.Fatalf("Decode: %v, want reason %#x", err, c.reason)
				}
			})
		}
	}
}

// TestDecodeDup31: MQTT 3.1 let a client set DUP on a resent PUBREL,
// SUBSCRIBE or UNSUBSCRIBE (mosquitto accepts it: its
// 03-publish-c2b-disconnect-qos2 test resends PUBREL so); 3.1.1 and 5.0
// require the flags 0010 [MQTT-2.1.3-1].
func TestDecodeDup31(t *testing.T) {
	frames := map[string][]byte{
		"PUBREL":      {0x6a, 2, 0, 5},
		"SUBSCRIBE":   {0x8a, 6, 0, 5, 0, 1, 'a', 1},
		"UNSUBSCRIBE": {0xaa, 5, 0, 5, 0, 1, 'a'},
		"PUBACK":      {0x48, 2, 0, 5}, // DUP never allowed here
	}
	for name, raw := range frames {
		for _, v := range []byte{Version31, Version311, Version5} {
			var p Packet
			_, err := (&Decoder{Version: v}).Decode(raw, &p)
			ok := v == Version31 && name != "PUBACK"
			if (err == nil) != ok {
				t.Errorf("%s with DUP, version %d: %v, want accepted %v", name, v, err, ok)
			}
		}
	}
}
