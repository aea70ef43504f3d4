package tools

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// checkFormat validates a -F string the way mosquitto_sub does before it
// connects: every %, @ and \ sequence must be complete and known.
func checkFormat(f string) error {
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '%':
			j := i + 1
			for j < len(f) && strings.IndexByte("-0123456789.", f[j]) >= 0 {
				j++
			}
			if j >= len(f) {
				return usagef("Incomplete format specifier.\n")
			}
			if strings.IndexByte("%ACDEFIjJlmPpqRrStUxX", f[j]) < 0 {
				return usagef("Invalid format specifier '%c'.\n", f[j])
			}
			i = j
		case '@':
			if i+1 >= len(f) {
				return usagef("Incomplete format specifier.\n")
			}
			i++
		case '\\':
			if i+1 >= len(f) {
				return usagef("Incomplete escape specifier.\n")
			}
			if strings.IndexByte(`\0aenrtv`, f[i+1]) < 0 {
				return usagef("Invalid escape specifier '%c'.\n", f[i+1])
			}
			i++
		}
	}
	return nil
}

// formatter renders received messages for sub and rr.
type formatter struct {
	format  string // -F
	verbose bool   // -v
	noEOL   bool   // -N
	pretty  bool   // --pretty
	now     func() time.Time
}

// render appends one message's output to dst. A %J whose payload is not
// JSON returns an error and nothing for that message.
func (f *formatter) render(dst []byte, m *client.Message) ([]byte, error) {
	switch {
	case f.format != "":
		var err error
		dst, err = f.custom(dst, m)
		if err != nil {
			return dst, err
		}
	case f.verbose:
		if len(m.Payload) == 0 && f.noEOL {
			return dst, nil // mosquitto_sub prints nothing here either
		}
		dst = append(append(dst, m.Topic...), ' ')
		if len(m.Payload) == 0 {
			dst = append(dst, "(null)"...)
		}
		dst = append(dst, m.Payload...)
	default:
		if len(m.Payload) == 0 {
			return dst, nil // mosquitto_sub prints nothing for an empty payload
		}
		dst = append(dst, m.Payload...)
	}
	if !f.noEOL {
		dst = append(dst, '\n')
	}
	return dst, nil
}

// spec is the flags, width and precision of one % sequence.
type spec struct {
	left, zero bool
	width      int
	max        int // -1: none
}

// pad applies the field width (and, for text, the maximum width).
func (s spec) pad(v string, numeric bool) string {
	if s.max >= 0 && !numeric && len(v) > s.max {
		v = v[:s.max]
	}
	if len(v) >= s.width {
		return v
	}
	fill := strings.Repeat(" ", s.width-len(v))
	if s.left {
		return v + fill
	}
	if s.zero && numeric {
		return strings.Repeat("0", s.width-len(v)) + v
	}
	return fill + v
}

func (f *formatter) custom(dst []byte, m *client.Message) ([]byte, error) {
	now := f.now()
	p := m.Props
	if p == nil {
		p = &codec.Properties{}
	}
	fm := f.format
	for i := 0; i < len(fm); i++ {
		c := fm[i]
		switch c {
		case '\\':
			i++
			dst = append(dst, map[byte]byte{'\\': '\\', '0': 0, 'a': '\a', 'e': 0x1b, 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v'}[fm[i]])
		case '@':
			i++
			dst = strftime(dst, fm[i], now)
		case '%':
			s := spec{max: -1}
			j := i + 1
			for ; fm[j] == '-' || fm[j] == '0'; j++ {
				s.left = s.left || fm[j] == '-'
				s.zero = s.zero || fm[j] == '0'
			}
			for ; fm[j] >= '0' && fm[j] <= '9'; j++ {
				s.width = s.width*10 + int(fm[j]-'0')
			}
			if fm[j] == '.' {
				s.max = 0
				for j++; fm[j] >= '0' && fm[j] <= '9'; j++ {
					s.max = s.max*10 + int(fm[j]-'0')
				}
			}
			i = j
			num := func(id byte, v uint32) {
				if p.Has(id) {
					dst = append(dst, s.pad(strconv.FormatUint(uint64(v), 10), true)...)
				}
			}
			switch fm[j] {
			case '%':
				dst = append(dst, '%')
			case 'A':
				num(codec.PropTopicAlias, uint32(p.TopicAlias))
			case 'C':
				if p.Has(codec.PropContentType) {
					dst = append(dst, s.pad(string(p.ContentType), false)...)
				}
			case 'D':
				dst = append(dst, p.CorrelationData...)
			case 'E':
				num(codec.PropMessageExpiry, p.MessageExpiry)
			case 'F':
				num(codec.PropPayloadFormat, uint32(p.PayloadFormat))
			case 'I':
				dst = append(dst, s.pad(now.Format("2006-01-02T15:04:05-0700"), false)...)
			case 'j', 'J':
				var err error
				if dst, err = f.json(dst, m, p, now, fm[j] == 'J'); err != nil {
					return dst, err
				}
			case 'l':
				dst = append(dst, s.pad(strconv.Itoa(len(m.Payload)), true)...)
			case 'm':
				dst = append(dst, s.pad(strconv.Itoa(int(m.PacketID)), true)...)
			case 'P':
				for k, u := range p.User {
					if k > 0 {
						dst = append(dst, ' ')
					}
					dst = append(append(append(dst, u.Key...), ':'), u.Value...)
				}
			case 'p':
				dst = append(dst, m.Payload...)
			case 'q':
				dst = append(dst, '0'+m.QoS)
			case 'R':
				if p.Has(codec.PropResponseTopic) {
					dst = append(dst, s.pad(string(p.ResponseTopic), false)...)
				}
			case 'r':
				dst = append(dst, b2c(m.Retain))
			case 'S':
				if len(p.SubscriptionIDs) > 0 {
					dst = append(dst, s.pad(strconv.Itoa(int(p.SubscriptionIDs[0])), true)...)
				}
			case 't':
				dst = append(dst, s.pad(string(m.Topic), false)...)
			case 'U':
				dst = append(dst, fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond())...)
			case 'x', 'X':
				h := fmt.Sprintf("%x", m.Payload)
				if fm[j] == 'X' {
					h = strings.ToUpper(h)
				}
				dst = append(dst, s.pad(h, true)...)
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

func b2c(b bool) byte {
	if b {
		return '1'
	}
	return '0'
}

// strftime renders one strftime(3) conversion (mosquitto's @X), plus @N,
// the nanoseconds of the current second.
func strftime(dst []byte, c byte, t time.Time) []byte {
	layouts := map[byte]string{
		'a': "Mon", 'A': "Monday", 'b': "Jan", 'h': "Jan", 'B': "January", 'd': "02", 'H': "15",
		'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'S': "05", 'y': "06", 'Y': "2006", 'z': "-0700",
		'Z': "MST", 'T': "15:04:05", 'D': "01/02/06", 'F': "2006-01-02", 'R': "15:04",
		'c': "Mon Jan  2 15:04:05 2006", 'x': "01/02/06", 'X': "15:04:05", 'r': "03:04:05 PM",
	}
	if l, ok := layouts[c]; ok {
		return t.AppendFormat(dst, l)
	}
	switch c {
	case '@':
		return append(dst, '@')
	case 'N':
		return strconv.AppendInt(dst, int64(t.Nanosecond()), 10)
	case 'e':
		return fmt.Appendf(dst, "%2d", t.Day())
	case 'j':
		return fmt.Appendf(dst, "%03d", t.YearDay())
	case 's':
		return strconv.AppendInt(dst, t.Unix(), 10)
	case 'u':
		wd := int(t.Weekday())
		if wd == 0 {
			wd = 7
		}
		return strconv.AppendInt(dst, int64(wd), 10)
	case 'w':
		return strconv.AppendInt(dst, int64(t.Weekday()), 10)
	case 'n':
		return append(dst, '\n')
	case 't':
		return append(dst, '\t')
	case '%':
		return append(dst, '%')
	}
	return dst
}

// jsonField is one member of the %j object; value is already JSON.
type jsonField struct {
	key   string
	value any // string (JSON text) or []jsonField (nested object)
}

// json renders %j (payload as a JSON string) or %J (payload verbatim, which
// must be JSON), compact or --pretty in cJSON's tab-indented layout.
func (f *formatter) json(dst []byte, m *client.Message, p *codec.Properties, now time.Time, raw bool) ([]byte, error) {
	fields := []jsonField{
		{"tst", quote(now.Format("2006-01-02T15:04:05.000000Z-0700"))},
		{"topic", quote(string(m.Topic))},
		{"qos", strconv.Itoa(int(m.QoS))},
		{"retain", string(b2c(m.Retain))},
		{"payloadlen", strconv.Itoa(len(m.Payload))},
	}
	if m.QoS > 0 {
		fields = append(fields, jsonField{"mid", strconv.Itoa(int(m.PacketID))})
	}
	if props := jsonProps(p); len(props) > 0 {
		fields = append(fields, jsonField{"properties", props})
	}
	switch {
	case raw:
		if !json.Valid(m.Payload) {
			return dst, fmt.Errorf("Error: Message payload is not valid JSON on topic %s", m.Topic)
		}
		fields = append(fields, jsonField{"payload", string(m.Payload)})
	case len(m.Payload) == 0:
		fields = append(fields, jsonField{"payload", "null"})
	default:
		// mosquitto_sub hands the payload to cJSON as a C string: it ends at
		// the first NUL byte.
		pl := m.Payload
		if i := bytes.IndexByte(pl, 0); i >= 0 {
			pl = pl[:i]
		}
		fields = append(fields, jsonField{"payload", quote(string(pl))})
	}
	return appendObject(dst, fields, f.pretty, 0), nil
}

// jsonProps lists the v5 properties in the order mosquitto's broker sends them.
func jsonProps(p *codec.Properties) []jsonField {
	var out []jsonField
	for _, id := range p.SubscriptionIDs {
		out = append(out, jsonField{"subscription-identifier", strconv.Itoa(int(id))})
	}
	if p.Has(codec.PropContentType) {
		out = append(out, jsonField{"content-type", quote(string(p.ContentType))})
	}
	if len(p.User) > 0 {
		var users []jsonField
		for _, u := range p.User {
			users = append(users, jsonField{string(u.Key), quote(string(u.Value))})
		}
		out = append(out, jsonField{"user-properties", users})
	}
	if p.Has(codec.PropResponseTopic) {
		out = append(out, jsonField{"response-topic", quote(string(p.ResponseTopic))})
	}
	if p.Has(codec.PropCorrelationData) {
		out = append(out, jsonField{"correlation-data", quote(string(p.CorrelationData))})
	}
	if p.Has(codec.PropPayloadFormat) {
		out = append(out, jsonField{"payload-format-indicator", strconv.Itoa(int(p.PayloadFormat))})
	}
	if p.Has(codec.PropTopicAlias) {
		out = append(out, jsonField{"topic-alias", strconv.Itoa(int(p.TopicAlias))})
	}
	if p.Has(codec.PropMessageExpiry) {
		out = append(out, jsonField{"message-expiry-interval", strconv.Itoa(int(p.MessageExpiry))})
	}
	return out
}

func appendObject(dst []byte, fields []jsonField, pretty bool, depth int) []byte {
	dst = append(dst, '{')
	if pretty {
		dst = append(dst, '\n')
	}
	for i, fl := range fields {
		if pretty {
			dst = append(dst, strings.Repeat("\t", depth+1)...)
		}
		dst = append(append(dst, quote(fl.key)...), ':')
		if pretty {
			dst = append(dst, '\t')
		}
		switch v := fl.value.(type) {
		case string:
			dst = append(dst, v...)
		case []jsonField:
			dst = appendObject(dst, v, pretty, depth+1)
		}
		if i < len(fields)-1 {
			dst = append(dst, ',')
		}
		if pretty {
			dst = append(dst, '\n')
		}
	}
	if pretty {
		dst = append(dst, strings.Repeat("\t", depth)...)
	}
	return append(dst, '}')
}

// quote escapes s as cJSON does: \" \\ \b \f \n \r \t, other control bytes
// as \u00xx, everything else (including invalid UTF-8) verbatim.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// debugLine renders a packet as libmosquitto's debug log does (-d).
func debugLine(id string, sent bool, p *codec.Packet, mid uint16) string {
	if id == "" {
		id = "(null)"
	}
	dir := "received"
	if sent {
		dir = "sending"
	}
	head := "Client " + id + " " + dir + " " + p.Type.String()
	switch p.Type {
	case codec.CONNACK:
		return fmt.Sprintf("%s (%d)", head, p.ReasonCode)
	case codec.PUBLISH:
		return fmt.Sprintf("%s (d%d, q%d, r%d, m%d, '%s', ... (%d bytes))", head, b2i(p.Dup), p.QoS, b2i(p.Retain), mid, p.Topic, len(p.Payload))
	case codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP:
		switch {
		case sent && (p.Type == codec.PUBACK || p.Type == codec.PUBREC):
			return fmt.Sprintf("%s (m%d, rc%d)", head, p.PacketID, p.ReasonCode)
		case sent:
			return fmt.Sprintf("%s (m%d)", head, p.PacketID)
		case p.Type == codec.PUBACK || p.Type == codec.PUBCOMP:
			return fmt.Sprintf("%s (Mid: %d, RC:%d)", head, p.PacketID, p.ReasonCode)
		}
		return fmt.Sprintf("%s (Mid: %d)", head, p.PacketID)
	case codec.SUBSCRIBE:
		var lines []string
		for _, s := range p.Subscriptions {
			opts := s.QoS
			if s.NoLocal {
				opts |= 0x04
			}
			if s.RetainAsPublished {
				opts |= 0x08
			}
			opts |= s.RetainHandling << 4
			lines = append(lines, fmt.Sprintf("%s (Mid: %d, Topic: %s, QoS: %d, Options: 0x%02x)", head, p.PacketID, s.Filter, s.QoS, opts&^3))
		}
		return strings.Join(lines, "\n")
	case codec.UNSUBSCRIBE:
		var lines []string
		for _, f := range p.Filters {
			lines = append(lines, fmt.Sprintf("%s (Mid: %d, Topic: %s)", head, p.PacketID, f))
		}
		return strings.Join(lines, "\n")
	}
	return head
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// AppendStrftime renders a strftime(3) format (the conversions mosquitto's
// tools know), for log_timestamp_format.
func AppendStrftime(dst []byte, format string, t time.Time) []byte {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			dst = append(dst, format[i])
			continue
		}
		i++
		dst = strftime(dst, format[i], t)
	}
	return dst
}
