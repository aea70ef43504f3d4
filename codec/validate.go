package codec

import "unicode/utf8"

// ValidUTF8String reports whether s may be carried as an MQTT UTF-8 encoded
// string: well-formed UTF-8 (no surrogates, no overlong forms) and no U+0000
// [MQTT-1.5.4-1, MQTT-1.5.4-2]. The length limit (65535) is the encoder's.
func ValidUTF8String(s []byte) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		i += size
	}
	return true
}

// MaxTopicSlashes is the most level separators a topic name or filter may
// hold (so 201 levels). The spec sets no limit; mosquitto refuses more (a
// PUBLISH as a protocol error, a SUBSCRIBE as malformed), and midge does the
// same, which also bounds the trie's depth.
const MaxTopicSlashes = 200

// ValidTopicName reports whether t may name a PUBLISH topic: at least one
// byte [MQTT-4.7.3-1] and no wildcard characters [MQTT-3.3.2-2]. It does not
// check UTF-8; see ValidUTF8String.
func ValidTopicName(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c == '+' || c == '#' {
			return false
		}
	}
	return true
}

// ValidTopicFilter reports whether f is a well-formed topic filter: at least
// one byte [MQTT-4.7.3-1], '#' only as a whole last level [MQTT-4.7.1-1] and
// '+' only as a whole level [MQTT-4.7.1-2]. It does not check UTF-8 or the
// shared-subscription syntax (see ValidSharedFilter).
func ValidTopicFilter(f []byte) bool {
	if len(f) == 0 {
		return false
	}
	for i, c := range f {
		switch c {
		case '+':
			if (i > 0 && f[i-1] != '/') || (i+1 < len(f) && f[i+1] != '/') {
				return false
			}
		case '#':
			if (i > 0 && f[i-1] != '/') || i != len(f)-1 {
				return false
			}
		}
	}
	return true
}

// SharePrefix starts a shared subscription's filter: $share/{group}/{filter}.
const SharePrefix = "$share/"

// SplitShared splits a shared subscription filter into its share name and
// topic filter; shared is false when f does not start with SharePrefix.
func SplitShared(f []byte) (group, filter []byte, shared bool) {
	if len(f) < len(SharePrefix) || string(f[:len(SharePrefix)]) != SharePrefix {
		return nil, f, false
	}
	rest := f[len(SharePrefix):]
	for i, c := range rest {
		if c == '/' {
			return rest[:i], rest[i+1:], true
		}
	}
	return rest, nil, true
}

// ValidSharedFilter reports whether a filter starting with SharePrefix is a
// well-formed shared subscription: a non-empty share name without '/', '+'
// or '#', then '/', then a valid topic filter [MQTT-4.8.2-1, MQTT-4.8.2-2].
// Filters without the prefix are checked by ValidTopicFilter alone.
func ValidSharedFilter(f []byte) bool {
	group, filter, shared := SplitShared(f)
	if !shared {
		return ValidTopicFilter(f)
	}
	if len(group) == 0 || filter == nil {
		return false
	}
	for _, c := range group {
		if c == '+' || c == '#' {
			return false
		}
	}
	return ValidTopicFilter(filter)
}
