// Package codec decodes and encodes MQTT 3.1, 3.1.1 and 5.0 control packets.
//
// Decoding is incremental and zero-copy: a Decoder is handed whatever bytes
// have arrived and either fills a reused *Packet (whose byte-slice fields point
// into the input) and reports how many bytes it used, or returns ErrIncomplete
// without consuming anything. Encoders append to a caller's buffer.
//
// codec imports neither gnet nor net: it only knows bytes.
package codec

// PacketType is the MQTT control packet type (the high nibble of byte 1).
type PacketType byte

// Control packet types [MQTT-2.1.2].
const (
	CONNECT     PacketType = 1
	CONNACK     PacketType = 2
	PUBLISH     PacketType = 3
	PUBACK      PacketType = 4
	PUBREC      PacketType = 5
	PUBREL      PacketType = 6
	PUBCOMP     PacketType = 7
	SUBSCRIBE   PacketType = 8
	SUBACK      PacketType = 9
	UNSUBSCRIBE PacketType = 10
	UNSUBACK    PacketType = 11
	PINGREQ     PacketType = 12
	PINGRESP    PacketType = 13
	DISCONNECT  PacketType = 14
	AUTH        PacketType = 15
)

var packetTypeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP",
	"DISCONNECT", "AUTH"}

func (t PacketType) String() string {
	if int(t) < len(packetTypeNames) {
		return packetTypeNames[t]
	}
	return "UNKNOWN"
}

// Protocol levels carried in CONNECT.
const (
	Version31  byte = 3 // protocol name "MQIsdp"
	Version311 byte = 4 // protocol name "MQTT"
	Version5   byte = 5 // protocol name "MQTT"
)

// UserProperty is one v5 user property; order is preserved [MQTT-3.3.2-18].
type UserProperty struct {
	Key, Value []byte
}

// Property identifiers (MQTT 5.0, section 2.2.2.2).
const (
	PropPayloadFormat        byte = 0x01
	PropMessageExpiry        byte = 0x02
	PropContentType          byte = 0x03
	PropResponseTopic        byte = 0x08
	PropCorrelationData      byte = 0x09
	PropSubscriptionID       byte = 0x0B
	PropSessionExpiry        byte = 0x11
	PropAssignedClientID     byte = 0x12
	PropServerKeepAlive      byte = 0x13
	PropAuthMethod           byte = 0x15
	PropAuthData             byte = 0x16
	PropRequestProblemInfo   byte = 0x17
	PropWillDelay            byte = 0x18
	PropRequestResponseInfo  byte = 0x19
	PropResponseInfo         byte = 0x1A
	PropServerReference      byte = 0x1C
	PropReasonString         byte = 0x1F
	PropReceiveMaximum       byte = 0x21
	PropTopicAliasMaximum    byte = 0x22
	PropTopicAlias           byte = 0x23
	PropMaximumQoS           byte = 0x24
	PropRetainAvailable      byte = 0x25
	PropUserProperty         byte = 0x26
	PropMaximumPacketSize    byte = 0x27
	PropWildcardSubAvailable byte = 0x28
	PropSubIDAvailable       byte = 0x29
	PropSharedSubAvailable   byte = 0x2A
)

// Properties holds the v5 properties of one packet. Present has bit (1<<id)
// set for every single-valued property that was present (or is to be
// encoded); SubscriptionIDs and User are present when non-empty. Byte-slice
// fields alias the decoder's input. Slices are reused across decodes.
type Properties struct {
	Present uint64

	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          []byte
	ResponseTopic        []byte
	CorrelationData      []byte
	SubscriptionIDs      []uint32 // PUBLISH may carry several; SUBSCRIBE at most one
	SessionExpiry        uint32
	AssignedClientID     []byte
	ServerKeepAlive      uint16
	AuthMethod           []byte
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         []byte
	ServerReference      []byte
	ReasonString         []byte
	ReceiveMaximum       uint16
	TopicAliasMaximum    uint16
	TopicAlias           uint16
	MaximumQoS           byte
	RetainAvailable      byte
	User                 []UserProperty
	MaximumPacketSize    uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte

	// Order holds the identifiers of a decoded PUBLISH or will's
	// properties as they came (a user property once per pair), so that a
	// forwarded message keeps its publisher's order as mosquitto does;
	// empty for properties the broker makes.
	Order []byte
}

// Has reports whether the single-valued property id is present.
func (p *Properties) Has(id byte) bool { return p.Present&(1<<id) != 0 }

// Set marks the single-valued property id as present (its field must be set too).
func (p *Properties) Set(id byte) { p.Present |= 1 << id }

// Reset clears the properties, keeping slice capacity for reuse.
func (p *Properties) Reset() {
	ids, user, order := p.SubscriptionIDs[:0], p.User[:0], p.Order[:0]
	*p = Properties{SubscriptionIDs: ids, User: user, Order: order}
}

// Subscription is one entry of a SUBSCRIBE payload.
type Subscription struct {
	Filter            []byte
	QoS               byte
	NoLocal           bool // v5
	RetainAsPublished bool // v5
	RetainHandling    byte // v5: 0 send, 1 send if new subscription, 2 don't send
}

// bridgeBit marks a bridge in the protocol level byte of CONNECT.
const bridgeBit = 0x80

// Connect holds the variable header and payload of a CONNECT packet.
type Connect struct {
	ProtocolName  []byte
	ProtocolLevel byte
	// Bridge is the 0x80 bit of the protocol level that mosquitto's bridges
	// set (try_private): the client is a broker forwarding messages.
	Bridge bool

	CleanStart bool // "clean session" in v3
	KeepAlive  uint16
	ClientID   []byte

	WillFlag    bool
	WillQoS     byte
	WillRetain  bool
	WillProps   Properties
	WillTopic   []byte
	WillPayload []byte

	UsernameFlag bool
	Username     []byte
	PasswordFlag bool
	Password     []byte
}

// Packet is one decoded (or to-be-encoded) MQTT control packet. One value is
// reused for every packet of a connection; which fields mean something
// depends on Type. Byte-slice fields alias the decoder's input and are valid
// only until that input is discarded.
type Packet struct {
	Type  PacketType
	Flags byte // the fixed header's low nibble, as received

	// PUBLISH fixed-header flags.
	Dup    bool
	QoS    byte
	Retain bool

	Topic    []byte // PUBLISH
	PacketID uint16 // PUBLISH (QoS>0), PUBACK..PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
	Payload  []byte // PUBLISH application message

	// ReasonCode: CONNACK return/reason code, PUBACK/PUBREC/PUBREL/PUBCOMP,
	// DISCONNECT and AUTH reason code (v5; 0 when omitted on the wire).
	ReasonCode     byte
	SessionPresent bool // CONNACK

	Props Properties // v5 properties of the variable header

	Connect Connect // CONNECT

	Subscriptions []Subscription // SUBSCRIBE
	Filters       [][]byte       // UNSUBSCRIBE
	ReasonCodes   []byte         // SUBACK (granted QoS / reason codes), UNSUBACK (v5)
}

// Reset clears p for reuse, keeping slice capacity. It runs once per
// decoded packet, so it clears the large parts (properties, CONNECT fields)
// only when they hold something: a v3 PUBLISH costs a few stores, not a
// clear of the whole struct. Property fields mean something only with their
// Present bit (or, for SubscriptionIDs and User, when non-empty).
func (p *Packet) Reset() {
	if p.Props.Present != 0 || len(p.Props.User) != 0 || len(p.Props.SubscriptionIDs) != 0 || len(p.Props.Order) != 0 {
		p.Props.Reset()
	}
	if p.Type == CONNECT || p.Connect.ProtocolName != nil || p.Connect.ProtocolLevel != 0 {
		will := &p.Connect.WillProps
		will.Reset()
		ids, user, order := will.SubscriptionIDs, will.User, will.Order
		p.Connect = Connect{}
		p.Connect.WillProps.SubscriptionIDs, p.Connect.WillProps.User, p.Connect.WillProps.Order = ids, user, order
	}
	p.Type, p.Flags = 0, 0
	p.Dup, p.QoS, p.Retain = false, 0, false
	p.Topic, p.PacketID, p.Payload = nil, 0, nil
	p.ReasonCode, p.SessionPresent = 0, false
	p.Subscriptions, p.Filters, p.ReasonCodes = p.Subscriptions[:0], p.Filters[:0], p.ReasonCodes[:0]
}
