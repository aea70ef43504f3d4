package codec

// Encoding appends to the caller's buffer and allocates only when it has to
// grow. String and binary fields longer than 65535 bytes, and packets whose
// remaining length exceeds MaxRemainingLength, cannot be carried: callers
// keep within those limits (the decoder never produces anything larger).

// encodeVersion maps the level an encoder is asked for to the one it
// writes: 0 means 3.1.1, as for a decoder before CONNECT.
func encodeVersion(v byte) byte {
	if v == 0 {
		return Version311
	}
	return v
}

// firstByte is the fixed header's first byte for p [MQTT-2.1.3-1].
func (p *Packet) firstByte() byte {
	if p.Type == PUBLISH {
		b := byte(PUBLISH)<<4 | (p.QoS&3)<<1
		if p.Dup {
			b |= 0x08
		}
		if p.Retain {
			b |= 0x01
		}
		return b
	}
	return byte(p.Type)<<4 | wantFlags[p.Type&15]
}

// connectVersion is the level a CONNECT is written at: the one asked for,
// else the packet's own, else 3.1.1.
func (p *Packet) connectVersion(v byte) byte {
	if v == 0 {
		v = p.Connect.ProtocolLevel
	}
	return encodeVersion(v)
}

// layout returns the remaining length of p at level v and the length of
// its (main) properties.
func (p *Packet) layout(v byte) (rl, props int) {
	if p.Type == CONNECT {
		return p.connectLayout(p.connectVersion(v))
	}
	v = encodeVersion(v)
	switch p.Type {
	case PUBLISH:
		return p.publishLayout(v)
	case CONNACK:
		if v != Version5 {
			return 2, 0
		}
		props = propsSize(&p.Props, CONNACK)
		return 2 + varintSize(props) + props, props
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		if v != Version5 {
			return 2, 0
		}
		return p.reasonPropsLayout(2)
	case DISCONNECT:
		if v != Version5 {
			return 0, 0
		}
		return p.reasonPropsLayout(0)
	case AUTH:
		return p.reasonPropsLayout(0)
	case SUBSCRIBE:
		rl = 2 + p.propsLayout(v, &props)
		for i := range p.Subscriptions {
			rl += 3 + len(p.Subscriptions[i].Filter)
		}
		return rl, props
	case UNSUBSCRIBE:
		rl = 2 + p.propsLayout(v, &props)
		for _, f := range p.Filters {
			rl += 2 + len(f)
		}
		return rl, props
	case SUBACK:
		return 2 + p.propsLayout(v, &props) + len(p.ReasonCodes), props
	case UNSUBACK:
		if v != Version5 {
			return 2, 0
		}
		return 2 + p.propsLayout(v, &props) + len(p.ReasonCodes), props
	}
	return 0, 0 // PINGREQ, PINGRESP
}

// propsLayout sets *props to the properties' length and returns the bytes
// they take with their length prefix (nothing before 5.0).
func (p *Packet) propsLayout(v byte, props *int) int {
	if v != Version5 {
		return 0
	}
	*props = propsSize(&p.Props, p.Type)
	return varintSize(*props) + *props
}

// reasonPropsLayout is the short-form rule of 5.0 acknowledgements,
// DISCONNECT and AUTH: the reason code is left out when it is 0 and there
// are no properties, the property length when there are no properties
// [MQTT-3.4.2.1, MQTT-3.14.2.1, MQTT-3.15.2.1].
func (p *Packet) reasonPropsLayout(base int) (rl, props int) {
	props = propsSize(&p.Props, p.Type)
	switch {
	case props > 0:
		return base + 1 + varintSize(props) + props, props
	case p.ReasonCode != 0:
		return base + 1, 0
	}
	return base, 0
}

func (p *Packet) connectLayout(v byte) (rl, props int) {
	c := &p.Connect
	rl = 2 + 4 + 1 + 1 + 2 + 2 + len(c.ClientID) // "MQTT", level, flags, keep alive
	if v == Version31 {
		rl += 2 // "MQIsdp"
	}
	if v == Version5 {
		props = propsSize(&p.Props, CONNECT)
		rl += varintSize(props) + props
	}
	if c.WillFlag {
		if v == Version5 {
			w := propsSize(&c.WillProps, willScope)
			rl += varintSize(w) + w
		}
		rl += 4 + len(c.WillTopic) + len(c.WillPayload)
	}
	if c.UsernameFlag {
		rl += 2 + len(c.Username)
	}
	if c.PasswordFlag {
		rl += 2 + len(c.Password)
	}
	return rl, props
}

func (p *Packet) publishLayout(v byte) (rl, props int) {
	rl = 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		rl += 2
	}
	if v == Version5 {
		props = propsSize(&p.Props, PUBLISH)
		rl += varintSize(props) + props
	}
	return rl, props
}

// EncodedSize is the number of bytes Encode would append for p at protocol
// level version, e.g. to check it against a peer's Maximum Packet Size.
func (p *Packet) EncodedSize(version byte) int {
	rl, _ := p.layout(version)
	return 1 + varintSize(rl) + rl
}

// Encode appends the whole packet p (any type) as protocol level version
// carries it and returns the extended buffer. For CONNECT, version 0 takes
// the level from p.Connect.ProtocolLevel, and the protocol name follows the
// level ("MQIsdp" for 3, "MQTT" otherwise); for other packets 0 means 3.1.1.
// p.Flags is not used: the fixed-header flags follow from the packet.
func (p *Packet) Encode(dst []byte, version byte) []byte {
	if p.Type == PUBLISH {
		return append(AppendPublishHeader(dst, version, p), p.Payload...)
	}
	v := encodeVersion(version)
	if p.Type == CONNECT {
		v = p.connectVersion(version)
	}
	rl, props := p.layout(v)
	dst = appendVarint(append(dst, p.firstByte()), rl)
	switch p.Type {
	case CONNECT:
		return p.appendConnect(dst, v, props)
	case CONNACK:
		var flags byte
		if p.SessionPresent {
			flags = 1
		}
		dst = append(dst, flags, p.ReasonCode)
		if v == Version5 {
			dst = appendProps(dst, &p.Props, CONNACK, props)
		}
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		dst = appendU16(dst, p.PacketID)
		if v == Version5 {
			dst = p.appendReasonProps(dst, rl-2, props)
		}
	case DISCONNECT:
		if v == Version5 {
			dst = p.appendReasonProps(dst, rl, props)
		}
	case AUTH:
		dst = p.appendReasonProps(dst, rl, props)
	case SUBSCRIBE:
		dst = appendU16(dst, p.PacketID)
		if v == Version5 {
			dst = appendProps(dst, &p.Props, SUBSCRIBE, props)
		}
		for i := range p.Subscriptions {
			s := &p.Subscriptions[i]
			dst = append(appendBinary(dst, s.Filter), s.options(v))
		}
	case UNSUBSCRIBE:
		dst = appendU16(dst, p.PacketID)
		if v == Version5 {
			dst = appendProps(dst, &p.Props, UNSUBSCRIBE, props)
		}
		for _, f := range p.Filters {
			dst = appendBinary(dst, f)
		}
	case SUBACK, UNSUBACK:
		dst = appendU16(dst, p.PacketID)
		if v == Version5 {
			dst = appendProps(dst, &p.Props, p.Type, props)
			dst = append(dst, p.ReasonCodes...)
		} else if p.Type == SUBACK {
			dst = append(dst, p.ReasonCodes...) // 3.x UNSUBACK has no payload
		}
	}
	return dst
}

// appendReasonProps appends the tail that reasonPropsLayout sized: n bytes
// of reason code and properties.
func (p *Packet) appendReasonProps(dst []byte, n, props int) []byte {
	if n == 0 {
		return dst
	}
	dst = append(dst, p.ReasonCode)
	if n == 1 {
		return dst
	}
	return appendProps(dst, &p.Props, p.Type, props)
}

// options is the subscription options byte [MQTT-3.8.3.1].
func (s *Subscription) options(v byte) byte {
	o := s.QoS & 3
	if v != Version5 {
		return o
	}
	if s.NoLocal {
		o |= 0x04
	}
	if s.RetainAsPublished {
		o |= 0x08
	}
	return o | (s.RetainHandling&3)<<4
}

func (p *Packet) appendConnect(dst []byte, v byte, props int) []byte {
	c := &p.Connect
	if v == Version31 {
		dst = append(dst, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p')
	} else {
		dst = append(dst, 0, 4, 'M', 'Q', 'T', 'T')
	}
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	if c.WillFlag {
		flags |= 0x04 | (c.WillQoS&3)<<3
		if c.WillRetain {
			flags |= 0x20
		}
	}
	if c.PasswordFlag {
		flags |= 0x40
	}
	if c.UsernameFlag {
		flags |= 0x80
	}
	level := v
	if c.Bridge {
		level |= bridgeBit
	}
	dst = appendU16(append(dst, level, flags), c.KeepAlive)
	if v == Version5 {
		dst = appendProps(dst, &p.Props, CONNECT, props)
	}
	dst = appendBinary(dst, c.ClientID)
	if c.WillFlag {
		if v == Version5 {
			dst = appendProps(dst, &c.WillProps, willScope, propsSize(&c.WillProps, willScope))
		}
		dst = appendBinary(appendBinary(dst, c.WillTopic), c.WillPayload)
	}
	if c.UsernameFlag {
		dst = appendBinary(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendBinary(dst, c.Password)
	}
	return dst
}

// AppendPublishHeader appends everything of the PUBLISH p except its
// payload: the fixed header (whose remaining length counts len(p.Payload)),
// the topic, the packet identifier when QoS > 0, and the 5.0 properties.
// The caller writes p.Payload after it (writev), so a payload shared by many
// subscribers is never copied.
func AppendPublishHeader(dst []byte, version byte, p *Packet) []byte {
	v := encodeVersion(version)
	rl, props := p.publishLayout(v)
	dst = appendVarint(append(dst, p.firstByte()), rl)
	dst = appendBinary(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendU16(dst, p.PacketID)
	}
	if v == Version5 {
		dst = appendProps(dst, &p.Props, PUBLISH, props)
	}
	return dst
}
