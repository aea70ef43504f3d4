package codec

import "bytes"

var slash = []byte{'/'}

func decodeSubscribe(r *reader, p *Packet, v byte) error {
	if err := readSubPacketID(r, p); err != nil {
		return err
	}
	if v == Version5 {
		if err := decodeProps(r, &p.Props, SUBSCRIBE); err != nil {
			return err
		}
	}
	for r.left() > 0 {
		f, err := readFilter(r, v)
		if err != nil {
			return err
		}
		opts, err := r.u8()
		if err != nil {
			return err
		}
		s := Subscription{Filter: f, QoS: opts & 3}
		if s.QoS == 3 {
			return errSubQoS // [MQTT-3.8.3-4] (3.1.1), Protocol Error in 5.0
		}
		if v == Version5 {
			s.NoLocal = opts&0x04 != 0
			s.RetainAsPublished = opts&0x08 != 0
			s.RetainHandling = opts >> 4 & 3
			if opts&0xc0 != 0 {
				return errSubReserved // [MQTT-3.8.3-5]
			}
			if s.RetainHandling == 3 {
				return errRetainHandling
			}
			if _, _, shared := SplitShared(f); shared && s.NoLocal {
				return errNoLocalShared // [MQTT-3.8.3-4]
			}
		} else if opts&0xfc != 0 {
			return errSubReserved // [MQTT-3-8.3-4] (3.1.1 numbering)
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	if len(p.Subscriptions) == 0 {
		return errNoFilters // [MQTT-3.8.3-3]
	}
	return nil
}

// readFilter reads one topic filter [MQTT-3.8.3-1] and checks its syntax
// [MQTT-4.7.1-1, MQTT-4.7.1-2, MQTT-4.7.3-1]; in 5.0 also the shared
// subscription syntax [MQTT-4.8.2-1, MQTT-4.8.2-2].
func readFilter(r *reader, v byte) ([]byte, error) {
	f, err := r.str()
	if err != nil {
		return nil, err
	}
	if bytes.Count(f, slash) > MaxTopicSlashes {
		return nil, errFilterLevels
	}
	ok := false
	if v == Version5 {
		ok = ValidSharedFilter(f)
	} else {
		ok = ValidTopicFilter(f)
	}
	if !ok {
		return nil, errFilter
	}
	return f, nil
}

func decodeSuback(r *reader, p *Packet, v byte) error {
	if err := readPacketID(r, p); err != nil {
		return err
	}
	if v == Version5 {
		if err := decodeProps(r, &p.Props, SUBACK); err != nil {
			return err
		}
	}
	return readReasonCodes(r, p, v)
}

// readReasonCodes copies the payload of a SUBACK or 5.0 UNSUBACK into
// p.ReasonCodes, one code per filter of the request.
func readReasonCodes(r *reader, p *Packet, v byte) error {
	if r.left() == 0 {
		return errNoReasonCodes
	}
	for _, c := range r.rest() {
		if !reasonAllowed(p.Type, v, c) {
			return errReasonCode
		}
		p.ReasonCodes = append(p.ReasonCodes, c)
	}
	return nil
}

func decodeUnsubscribe(r *reader, p *Packet, v byte) error {
	if err := readSubPacketID(r, p); err != nil {
		return err
	}
	if v == Version5 {
		if err := decodeProps(r, &p.Props, UNSUBSCRIBE); err != nil {
			return err
		}
	}
	for r.left() > 0 {
		f, err := readFilter(r, v)
		if err != nil {
			return err
		}
		p.Filters = append(p.Filters, f)
	}
	if len(p.Filters) == 0 {
		return errNoUnsubFilters // [MQTT-3.10.3-2]
	}
	return nil
}

// decodeUnsuback decodes an UNSUBACK: only a packet identifier before 5.0.
func decodeUnsuback(r *reader, p *Packet, v byte) error {
	if err := readPacketID(r, p); err != nil {
		return err
	}
	if v != Version5 {
		return nil
	}
	if err := decodeProps(r, &p.Props, UNSUBACK); err != nil {
		return err
	}
	return readReasonCodes(r, p, v)
}

// readSubPacketID is readPacketID with mosquitto's reason for id 0 in a
// (UN)SUBSCRIBE: malformed rather than a protocol error.
func readSubPacketID(r *reader, p *Packet) error {
	err := readPacketID(r, p)
	if err == errPacketID0 {
		return errSubPacketID0
	}
	return err
}
