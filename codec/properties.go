package codec

import "math/bits"

// willScope stands for the will properties of a CONNECT in the tables below
// (packet type 0 is reserved, so it is free).
const willScope PacketType = 0

// propsAllowed[scope] has bit id set for every property that packet type may
// carry (MQTT 5.0, section 2.2.2.2).
var propsAllowed = buildPropsAllowed()

func buildPropsAllowed() (allowed [16]uint64) {
	on := func(id byte, scopes ...PacketType) {
		for _, s := range scopes {
			allowed[s] |= 1 << id
		}
	}
	on(PropPayloadFormat, PUBLISH, willScope)
	on(PropMessageExpiry, PUBLISH, willScope)
	on(PropContentType, PUBLISH, willScope)
	on(PropResponseTopic, PUBLISH, willScope)
	on(PropCorrelationData, PUBLISH, willScope)
	on(PropSubscriptionID, PUBLISH, SUBSCRIBE)
	on(PropSessionExpiry, CONNECT, CONNACK, DISCONNECT)
	on(PropAssignedClientID, CONNACK)
	on(PropServerKeepAlive, CONNACK)
	on(PropAuthMethod, CONNECT, CONNACK, AUTH)
	on(PropAuthData, CONNECT, CONNACK, AUTH)
	on(PropRequestProblemInfo, CONNECT)
	on(PropWillDelay, willScope)
	on(PropRequestResponseInfo, CONNECT)
	on(PropResponseInfo, CONNACK)
	on(PropServerReference, CONNACK, DISCONNECT)
	on(PropReasonString, CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH)
	on(PropReceiveMaximum, CONNECT, CONNACK)
	on(PropTopicAliasMaximum, CONNECT, CONNACK)
	on(PropTopicAlias, PUBLISH)
	on(PropMaximumQoS, CONNACK)
	on(PropRetainAvailable, CONNACK)
	on(PropUserProperty, CONNECT, CONNACK, PUBLISH, willScope, PUBACK, PUBREC, PUBREL, PUBCOMP,
		SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH)
	on(PropMaximumPacketSize, CONNECT, CONNACK)
	on(PropWildcardSubAvailable, CONNACK)
	on(PropSubIDAvailable, CONNACK)
	on(PropSharedSubAvailable, CONNACK)
	return allowed
}

// propOrder[scope] lists the properties that scope may carry in the order
// they are written. The spec allows any order, but clients and tests that
// compare bytes expect mosquitto's, so the packets mosquitto fills in a
// fixed sequence follow it; the rest go in identifier order.
var propOrder = buildPropOrder()

func buildPropOrder() (order [16][]byte) {
	first := map[PacketType][]byte{
		// mosquitto adds its CONNACK properties when the connection is
		// authorised (topic alias maximum, server keep alive, assigned
		// client id, authentication) and then when sending (retain
		// available, maximum packet size, receive maximum, maximum QoS).
		CONNACK: {PropTopicAliasMaximum, PropServerKeepAlive, PropAssignedClientID, PropAuthMethod,
			PropAuthData, PropRetainAvailable, PropMaximumPacketSize, PropReceiveMaximum, PropMaximumQoS},
		// Subscription identifiers belong to the delivery and go before
		// the message's own properties.
		PUBLISH: {PropSubscriptionID},
	}
	// The message expiry interval is written after all others, as
	// mosquitto does: it is recomputed for each delivery.
	last := map[PacketType][]byte{PUBLISH: {PropMessageExpiry}, willScope: {PropMessageExpiry}}
	for s := range order {
		in := func(ids []byte, id byte) bool {
			for _, x := range ids {
				if x == id {
					return true
				}
			}
			return false
		}
		order[s] = append(order[s], first[PacketType(s)]...)
		for id := byte(0); id < 64; id++ {
			if propsAllowed[s]&(1<<id) != 0 && !in(first[PacketType(s)], id) && !in(last[PacketType(s)], id) {
				order[s] = append(order[s], id)
			}
		}
		order[s] = append(order[s], last[PacketType(s)]...)
	}
	return order
}

// PropertyAllowed reports whether packet type t may carry property id
// (t == 0 asks about CONNECT will properties).
func PropertyAllowed(t PacketType, id byte) bool {
	return id < 64 && int(t) < len(propsAllowed) && propsAllowed[t]&(1<<id) != 0
}

// decodeProps reads a property length and the properties that follow into p,
// checking that each is known, allowed in scope, given once when
// single-valued, and in range.
func decodeProps(r *reader, p *Properties, scope PacketType) error {
	n, err := r.varint()
	if err != nil {
		return err
	}
	if n > r.left() {
		return errPropsLength
	}
	end := r.i + n
	pr := reader{b: r.b[:end], i: r.i}
	for pr.left() > 0 {
		// The identifier is a variable byte integer, but every known one is
		// below 0x80, so a longer one is unknown anyway.
		id, _ := pr.u8()
		if id >= 64 || propsAllowed[scope]&(1<<id) == 0 {
			if id < 64 && allProps&(1<<id) != 0 {
				return errPropNotAllowed
			}
			return errPropUnknown
		}
		if id != PropUserProperty && id != PropSubscriptionID {
			if p.Present&(1<<id) != 0 {
				return errPropDuplicate
			}
			p.Present |= 1 << id
		}
		if err := decodeProp(&pr, p, id, scope); err != nil {
			return err
		}
		if scope == PUBLISH || scope == willScope {
			p.Order = append(p.Order, id)
		}
	}
	r.i = end
	if p.Has(PropAuthData) && !p.Has(PropAuthMethod) {
		return errAuthData
	}
	return nil
}

// allProps has a bit for every property identifier defined by MQTT 5.0.
var allProps = func() uint64 {
	var m uint64
	for _, a := range propsAllowed {
		m |= a
	}
	return m
}()

// decodeProp reads the value of property id.
func decodeProp(r *reader, p *Properties, id byte, scope PacketType) (err error) {
	switch id {
	case PropPayloadFormat:
		// Only 0 and 1 are defined, but the spec does not make another
		// value an error, and mosquitto passes any on: so does midge.
		p.PayloadFormat, err = r.u8()
	case PropMessageExpiry:
		p.MessageExpiry, err = r.u32()
	case PropContentType:
		p.ContentType, err = r.str()
	case PropResponseTopic:
		if p.ResponseTopic, err = r.str(); err == nil && !ValidTopicName(p.ResponseTopic) {
			err = errResponseTopic // [MQTT-3.3.2-14]
		}
	case PropCorrelationData:
		p.CorrelationData, err = r.binary()
	case PropSubscriptionID:
		if scope == SUBSCRIBE && len(p.SubscriptionIDs) > 0 {
			return errPropDuplicate
		}
		var v int
		if v, err = r.varint(); err == nil && v == 0 {
			err = errPropValue // [MQTT-3.8.2.1.2] a subscription identifier of 0 is a protocol error
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
	case PropSessionExpiry:
		p.SessionExpiry, err = r.u32()
	case PropAssignedClientID:
		p.AssignedClientID, err = r.str()
	case PropServerKeepAlive:
		p.ServerKeepAlive, err = r.u16()
	case PropAuthMethod:
		p.AuthMethod, err = r.str()
	case PropAuthData:
		p.AuthData, err = r.binary()
	case PropRequestProblemInfo:
		p.RequestProblemInfo, err = r.flag()
	case PropWillDelay:
		p.WillDelay, err = r.u32()
	case PropRequestResponseInfo:
		p.RequestResponseInfo, err = r.flag()
	case PropResponseInfo:
		p.ResponseInfo, err = r.str()
	case PropServerReference:
		p.ServerReference, err = r.str()
	case PropReasonString:
		p.ReasonString, err = r.str()
	case PropReceiveMaximum:
		if p.ReceiveMaximum, err = r.u16(); err == nil && p.ReceiveMaximum == 0 {
			err = errPropValue // [MQTT-3.1.2.11.3] receive maximum 0 is a protocol error
		}
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum, err = r.u16()
	case PropTopicAlias:
		if p.TopicAlias, err = r.u16(); err == nil && p.TopicAlias == 0 {
			err = errTopicAlias0 // [MQTT-3.3.2-8]
		}
	case PropMaximumQoS:
		p.MaximumQoS, err = r.flag()
	case PropRetainAvailable:
		p.RetainAvailable, err = r.flag()
	case PropUserProperty:
		var u UserProperty
		if u.Key, err = r.str(); err == nil {
			u.Value, err = r.str()
		}
		p.User = append(p.User, u)
	case PropMaximumPacketSize:
		if p.MaximumPacketSize, err = r.u32(); err == nil && p.MaximumPacketSize == 0 {
			err = errPropValue // [MQTT-3.1.2.11.4] maximum packet size 0 is a protocol error
		}
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable, err = r.flag()
	case PropSubIDAvailable:
		p.SubIDAvailable, err = r.flag()
	case PropSharedSubAvailable:
		p.SharedSubAvailable, err = r.flag()
	}
	return err
}

// flag reads a byte property whose only values are 0 and 1; any other
// value is a protocol error.
func (r *reader) flag() (byte, error) {
	v, err := r.u8()
	if err == nil && v > 1 {
		err = errPropValue
	}
	return v, err
}

// propMask is the set of properties of p that scope carries, with the
// multi-valued ones included when non-empty.
func propMask(p *Properties, scope PacketType) uint64 {
	m := p.Present
	if len(p.SubscriptionIDs) > 0 {
		m |= 1 << PropSubscriptionID
	}
	if len(p.User) > 0 {
		m |= 1 << PropUserProperty
	}
	return m & propsAllowed[scope]
}

// propsSize is the byte length of the properties of p that scope carries,
// without the property length itself.
func propsSize(p *Properties, scope PacketType) int {
	n := 0
	for m := propMask(p, scope); m != 0; m &= m - 1 {
		id := byte(bits.TrailingZeros64(m))
		switch id {
		case PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo, PropMaximumQoS,
			PropRetainAvailable, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable:
			n += 2
		case PropServerKeepAlive, PropReceiveMaximum, PropTopicAliasMaximum, PropTopicAlias:
			n += 3
		case PropMessageExpiry, PropSessionExpiry, PropWillDelay, PropMaximumPacketSize:
			n += 5
		case PropSubscriptionID:
			for _, v := range p.SubscriptionIDs {
				n += 1 + varintSize(int(v))
			}
		case PropUserProperty:
			for _, u := range p.User {
				n += 5 + len(u.Key) + len(u.Value)
			}
		default:
			n += 3 + len(propBytes(p, id))
		}
	}
	return n
}

// propBytes returns the value of a string or binary property.
func propBytes(p *Properties, id byte) []byte {
	switch id {
	case PropContentType:
		return p.ContentType
	case PropResponseTopic:
		return p.ResponseTopic
	case PropCorrelationData:
		return p.CorrelationData
	case PropAssignedClientID:
		return p.AssignedClientID
	case PropAuthMethod:
		return p.AuthMethod
	case PropAuthData:
		return p.AuthData
	case PropResponseInfo:
		return p.ResponseInfo
	case PropServerReference:
		return p.ServerReference
	case PropReasonString:
		return p.ReasonString
	}
	return nil
}

// appendProps appends the property length size and the properties of p
// that scope carries, in propOrder, except that a PUBLISH or will keeps the
// order its publisher used (p.Order) for the properties it forwards; size
// comes from propsSize.
func appendProps(dst []byte, p *Properties, scope PacketType, size int) []byte {
	dst = appendVarint(dst, size)
	m := propMask(p, scope)
	if m == 0 {
		return dst
	}
	user := 0 // user properties written so far
	if len(p.Order) > 0 && (scope == PUBLISH || scope == willScope) {
		// What the delivery adds (subscription identifiers) comes first,
		// what it recomputes (message expiry) last.
		if m&(1<<PropSubscriptionID) != 0 {
			dst = appendProp(dst, p, PropSubscriptionID, &user)
			m &^= 1 << PropSubscriptionID
		}
		for _, id := range p.Order {
			if id >= 64 || m&(1<<id) == 0 || id == PropMessageExpiry {
				continue
			}
			if id == PropUserProperty {
				if user < len(p.User) {
					u := p.User[user]
					dst = appendBinary(appendBinary(append(dst, id), u.Key), u.Value)
					user++
				}
				continue
			}
			dst = appendProp(dst, p, id, &user)
			m &^= 1 << id
		}
	}
	for _, id := range propOrder[scope] {
		if m&(1<<id) != 0 {
			dst = appendProp(dst, p, id, &user)
		}
	}
	return dst
}

// appendProp appends property id of p; for user properties, those from
// index *user on.
func appendProp(dst []byte, p *Properties, id byte, user *int) []byte {
	switch id {
	case PropPayloadFormat:
		dst = append(dst, id, p.PayloadFormat)
	case PropRequestProblemInfo:
		dst = append(dst, id, p.RequestProblemInfo)
	case PropRequestResponseInfo:
		dst = append(dst, id, p.RequestResponseInfo)
	case PropMaximumQoS:
		dst = append(dst, id, p.MaximumQoS)
	case PropRetainAvailable:
		dst = append(dst, id, p.RetainAvailable)
	case PropWildcardSubAvailable:
		dst = append(dst, id, p.WildcardSubAvailable)
	case PropSubIDAvailable:
		dst = append(dst, id, p.SubIDAvailable)
	case PropSharedSubAvailable:
		dst = append(dst, id, p.SharedSubAvailable)
	case PropServerKeepAlive:
		dst = appendU16(append(dst, id), p.ServerKeepAlive)
	case PropReceiveMaximum:
		dst = appendU16(append(dst, id), p.ReceiveMaximum)
	case PropTopicAliasMaximum:
		dst = appendU16(append(dst, id), p.TopicAliasMaximum)
	case PropTopicAlias:
		dst = appendU16(append(dst, id), p.TopicAlias)
	case PropMessageExpiry:
		dst = appendU32(append(dst, id), p.MessageExpiry)
	case PropSessionExpiry:
		dst = appendU32(append(dst, id), p.SessionExpiry)
	case PropWillDelay:
		dst = appendU32(append(dst, id), p.WillDelay)
	case PropMaximumPacketSize:
		dst = appendU32(append(dst, id), p.MaximumPacketSize)
	case PropSubscriptionID:
		for _, v := range p.SubscriptionIDs {
			dst = appendVarint(append(dst, id), int(v))
		}
	case PropUserProperty:
		for _, u := range p.User[*user:] {
			dst = appendBinary(appendBinary(append(dst, id), u.Key), u.Value)
		}
		*user = len(p.User)
	default:
		dst = appendBinary(append(dst, id), propBytes(p, id))
	}
	return dst
}
