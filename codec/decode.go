package codec

// Decoder decodes the packets of one connection. It holds no buffer: the
// caller passes whatever bytes have arrived and discards the bytes used.
type Decoder struct {
	// Version is the protocol level of the connection; 0 until a CONNECT
	// has been decoded, which sets it. Before that, packets other than
	// CONNECT are decoded as 3.1.1 (the broker itself enforces that the
	// first packet is a CONNECT). A client sets it before reading CONNACK.
	Version byte
	// MaxPacketSize refuses larger frames with ErrPacketTooLarge before
	// their body arrives; 0 = no limit beyond the protocol's.
	MaxPacketSize int
}

// wantFlags is the fixed-header low nibble each packet type must carry
// [MQTT-2.1.3-1]; PUBLISH is checked on its own.
var wantFlags = [16]byte{PUBREL: 2, SUBSCRIBE: 2, UNSUBSCRIBE: 2}

// Decode decodes one packet from the start of b into p, which is Reset
// first. It returns the number of bytes the frame used; ErrIncomplete (n=0)
// when b does not hold the whole frame yet; or, with n=0, an *Error whose
// Reason is the v5 reason code to report, at once when the first byte is
// wrong on its own. Byte slices in p alias b.
//
// When decoding a CONNECT fails after its protocol level was read,
// p.Connect.ProtocolName and ProtocolLevel hold what was read, so that the
// broker can answer with a CONNACK of the right version.
func (d *Decoder) Decode(b []byte, p *Packet) (n int, err error) {
	v := d.Version
	if v == 0 {
		v = Version311
	}
	// The first byte is judged before the length: a frame that is wrong
	// from its first byte is refused without waiting for its body.
	if len(b) > 0 {
		if err := checkFirstByte(b[0], v); err != nil {
			return 0, err
		}
	}
	n, hdr, err := frameSize(b, d.MaxPacketSize)
	if err != nil {
		return 0, err
	}
	if len(b) < n {
		return 0, ErrIncomplete
	}
	p.Reset()
	p.Type = PacketType(b[0] >> 4)
	p.Flags = b[0] & 0x0f
	if dup31(v, p.Type, p.Flags) {
		p.Flags = wantFlags[p.Type] // the DUP bit means nothing to midge
	}
	r := reader{b: b[:n], i: hdr}
	switch p.Type {
	case CONNECT:
		err = decodeConnect(&r, p)
	case CONNACK:
		err = decodeConnack(&r, p, v)
	case PUBLISH:
		err = decodePublish(&r, p, v)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		err = decodeAck(&r, p, v)
	case SUBSCRIBE:
		err = asMalformed(decodeSubscribe(&r, p, v))
	case SUBACK:
		err = decodeSuback(&r, p, v)
	case UNSUBSCRIBE:
		err = asMalformed(decodeUnsubscribe(&r, p, v))
	case UNSUBACK:
		err = decodeUnsuback(&r, p, v)
	case PINGREQ, PINGRESP:
	case DISCONNECT:
		if v == Version5 {
			err = decodeReasonProps(&r, p)
		}
	case AUTH: // 5.0 only: checkFirstByte refused it before
		err = decodeReasonProps(&r, p)
	}
	if err != nil {
		return 0, err
	}
	if r.left() != 0 {
		return 0, errTrailing
	}
	if p.Type == CONNECT {
		d.Version = p.Connect.ProtocolLevel
	}
	return n, nil
}

// dup31 reports a DUP flag that MQTT 3.1 allowed on a resent PUBREL,
// SUBSCRIBE or UNSUBSCRIBE (their QoS 1 bits otherwise as required).
func dup31(v byte, t PacketType, flags byte) bool {
	return v == Version31 && wantFlags[t] == 0x02 && flags == 0x0a
}

func decodeConnect(r *reader, p *Packet) error {
	c := &p.Connect
	var err error
	if c.ProtocolName, err = r.binary(); err != nil {
		return err
	}
	if c.ProtocolLevel, err = r.u8(); err != nil {
		return err
	}
	// mosquitto's bridges set the top bit of the level ("try_private") to
	// say that they are bridges, not ordinary clients.
	c.Bridge = c.ProtocolLevel&bridgeBit != 0
	c.ProtocolLevel &^= bridgeBit
	switch {
	case c.ProtocolLevel == Version31 && string(c.ProtocolName) == "MQIsdp":
	case (c.ProtocolLevel == Version311 || c.ProtocolLevel == Version5) && string(c.ProtocolName) == "MQTT":
	default:
		return ErrProtocolName // [MQTT-3.1.2-1, MQTT-3.1.2-2]
	}
	v := c.ProtocolLevel
	flags, err := r.u8()
	if err != nil {
		return err
	}
	if flags&0x01 != 0 {
		return errConnectReserved // [MQTT-3.1.2-3]
	}
	c.CleanStart = flags&0x02 != 0
	c.WillFlag = flags&0x04 != 0
	c.WillQoS = flags >> 3 & 3
	c.WillRetain = flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	if c.WillQoS == 3 {
		return errWillQoS // [MQTT-3.1.2-14]
	}
	if !c.WillFlag && (c.WillQoS != 0 || c.WillRetain) {
		return errWillFlags // [MQTT-3.1.2-11, MQTT-3.1.2-13, MQTT-3.1.2-15]
	}
	if v != Version5 && c.PasswordFlag && !c.UsernameFlag {
		return errPasswordFlag // [MQTT-3.1.2-22]; 5.0 allows a password alone
	}
	if c.KeepAlive, err = r.u16(); err != nil {
		return err
	}
	if v == Version5 {
		if err = decodeProps(r, &p.Props, CONNECT); err != nil {
			return err
		}
	}
	if c.ClientID, err = r.str(); err != nil { // [MQTT-3.1.3-4]
		return err
	}
	if c.WillFlag {
		if v == Version5 {
			if err = decodeProps(r, &c.WillProps, willScope); err != nil {
				return err
			}
		}
		if c.WillTopic, err = r.str(); err != nil { // [MQTT-3.1.3-11]
			return err
		}
		if !ValidTopicName(c.WillTopic) {
			return errWillTopic
		}
		if c.WillPayload, err = r.binary(); err != nil {
			return err
		}
	}
	if c.UsernameFlag {
		if c.Username, err = r.str(); err != nil { // [MQTT-3.1.3-12]
			return err
		}
	}
	if c.PasswordFlag {
		if c.Password, err = r.binary(); err != nil {
			return err
		}
	}
	return nil
}

func decodeConnack(r *reader, p *Packet, v byte) error {
	flags, err := r.u8()
	if err != nil {
		return err
	}
	if flags&^1 != 0 {
		return errConnackFlags // [MQTT-3.2.2-1]
	}
	p.SessionPresent = flags&1 != 0
	if p.ReasonCode, err = r.u8(); err != nil {
		return err
	}
	if !reasonAllowed(CONNACK, v, p.ReasonCode) {
		return errReasonCode
	}
	// 5.0 always carries a property length; one that is missing is
	// tolerated as "no properties".
	if v == Version5 && r.left() > 0 {
		return decodeProps(r, &p.Props, CONNACK)
	}
	return nil
}

func decodePublish(r *reader, p *Packet, v byte) error {
	p.Dup = p.Flags&0x08 != 0
	p.QoS = p.Flags >> 1 & 3
	p.Retain = p.Flags&0x01 != 0 // QoS 3 and DUP on QoS 0: see checkFirstByte
	var err error
	if p.Topic, err = r.str(); err != nil { // [MQTT-3.3.2-1]
		return err
	}
	slashes := 0
	for _, c := range p.Topic {
		switch c {
		case '+', '#':
			return errTopicWildcard // [MQTT-3.3.2-2]
		case '/':
			slashes++
		}
	}
	if slashes > MaxTopicSlashes {
		return errTopicLevels
	}
	if p.QoS > 0 {
		if err = readPacketID(r, p); err != nil {
			return err
		}
	}
	if v == Version5 {
		if err = decodeProps(r, &p.Props, PUBLISH); err != nil {
			return err
		}
	}
	if len(p.Topic) == 0 {
		if v != Version5 {
			return errTopicEmptyV3 // [MQTT-4.7.3-1]
		}
		if !p.Props.Has(PropTopicAlias) {
			return errTopicEmpty // [MQTT-3.3.2-1]: an empty topic needs an alias
		}
	}
	p.Payload = r.rest()
	return nil
}

// readPacketID reads a packet identifier, which must not be 0 [MQTT-2.2.1-3].
func readPacketID(r *reader, p *Packet) error {
	var err error
	if p.PacketID, err = r.u16(); err != nil {
		return err
	}
	if p.PacketID == 0 {
		return errPacketID0
	}
	return nil
}

// decodeAck decodes PUBACK, PUBREC, PUBREL and PUBCOMP. In 5.0 the reason
// code and properties may be left out [MQTT-3.4.2.1].
func decodeAck(r *reader, p *Packet, v byte) error {
	if err := readPacketID(r, p); err != nil {
		return err
	}
	if v != Version5 {
		return nil
	}
	return decodeReasonProps(r, p)
}

// decodeReasonProps decodes an optional reason code followed by optional
// properties, the tail of 5.0 acknowledgements, DISCONNECT and AUTH.
func decodeReasonProps(r *reader, p *Packet) error {
	if r.left() == 0 {
		return nil
	}
	p.ReasonCode, _ = r.u8()
	if !reasonAllowed(p.Type, Version5, p.ReasonCode) {
		return errReasonCode
	}
	if r.left() == 0 {
		return nil
	}
	return decodeProps(r, &p.Props, p.Type)
}

// reasonCodes lists the reason codes each 5.0 packet type may carry
// (MQTT 5.0, section 2.4 and each packet's Reason Code section).
var reasonCodes = [16]string{
	CONNACK:  "\x00\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8c\x90\x95\x97\x99\x9a\x9b\x9c\x9d\x9f",
	PUBACK:   "\x00\x10\x80\x83\x87\x90\x91\x97\x99",
	PUBREC:   "\x00\x10\x80\x83\x87\x90\x91\x97\x99",
	PUBREL:   "\x00\x92",
	PUBCOMP:  "\x00\x92",
	SUBACK:   "\x00\x01\x02\x80\x83\x87\x8f\x91\x97\x9e\xa1\xa2",
	UNSUBACK: "\x00\x11\x80\x83\x87\x8f\x91",
	DISCONNECT: "\x00\x04\x80\x81\x82\x83\x87\x89\x8b\x8d\x8e\x8f\x90\x93\x94\x95\x96\x97\x98" +
		"\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2",
	AUTH: "\x00\x18\x19",
}

// reasonSets[t] has bit c set when reason code c is allowed in type t.
var reasonSets = func() (sets [16][4]uint64) {
	for t, codes := range reasonCodes {
		for i := 0; i < len(codes); i++ {
			sets[t][codes[i]>>6] |= 1 << (codes[i] & 63)
		}
	}
	return sets
}()

// reasonAllowed reports whether code may appear in packet type t at
// protocol level v. 3.x CONNACK return codes run 0 to 5, 3.x SUBACK codes
// are 0, 1, 2 and 0x80.
func reasonAllowed(t PacketType, v byte, code byte) bool {
	if v != Version5 {
		switch t {
		case CONNACK:
			return code <= ConnRefusedNotAuthorized
		case SUBACK:
			return code <= 2 || code == SubackFailure
		}
	}
	return reasonSets[t][code>>6]&(1<<(code&63)) != 0
}

// ReasonAllowed reports whether a 5.0 packet of type t may carry reason code
// code (the broker uses it to check what it is about to send).
func ReasonAllowed(t PacketType, code byte) bool { return reasonAllowed(t, Version5, code) }
