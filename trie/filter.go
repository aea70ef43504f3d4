// Package trie holds subscriptions (topic filter → subscribers) and the
// retained-message store of the broker. It knows nothing of sockets, sessions
// or the codec: a subscriber is an opaque handle.
package trie

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrInvalidFilter is wrapped by every filter validation error.
var ErrInvalidFilter = errors.New("trie: invalid topic filter")

// ErrInvalidTopic is wrapped by every topic name validation error.
var ErrInvalidTopic = errors.New("trie: invalid topic name")

// MaxTopicLen is the longest topic name or filter: a UTF-8 string with a
// two-byte length [MQTT-4.7.3-3].
const MaxTopicLen = 65535

const sharePrefix = "$share/"

// ValidFilter reports whether filter may be subscribed to. A shared filter
// "$share/{group}/{filter}" needs a non-empty group without '+', '#' or '/'
// [MQTT-4.8.2-1] followed by '/' and a valid filter [MQTT-4.8.2-2].
func ValidFilter(filter string) error {
	if group, inner, ok := ParseShared(filter); ok {
		if group == "" || strings.ContainsAny(group, "+#") {
			return fmt.Errorf("%w: share name must be non-empty without wildcards", ErrInvalidFilter) // [MQTT-4.8.2-1]
		}
		return validFilter(inner)
	}
	if strings.HasPrefix(filter, sharePrefix) || filter == "$share" {
		return fmt.Errorf("%w: $share needs a share name and a filter", ErrInvalidFilter) // [MQTT-4.8.2-2]
	}
	return validFilter(filter)
}

func validFilter(filter string) error {
	if err := validString(filter, ErrInvalidFilter); err != nil {
		return err
	}
	for rest, more := filter, true; more; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		switch {
		case level == "#":
			if more {
				return fmt.Errorf("%w: '#' must be the last level", ErrInvalidFilter) // [MQTT-4.7.1-1]
			}
		case level == "+":
		case strings.ContainsAny(level, "+#"):
			return fmt.Errorf("%w: wildcard must occupy a whole level", ErrInvalidFilter) // [MQTT-4.7.1-1] [MQTT-4.7.1-2]
		}
	}
	return nil
}

// ValidTopic reports whether topic may be published to: like a filter but
// without wildcards [MQTT-4.7.0-1].
func ValidTopic(topic string) error {
	if err := validString(topic, ErrInvalidTopic); err != nil {
		return err
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("%w: wildcard in topic name", ErrInvalidTopic) // [MQTT-4.7.0-1]
	}
	return nil
}

func validString(s string, kind error) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", kind) // [MQTT-4.7.3-1]
	case len(s) > MaxTopicLen:
		return fmt.Errorf("%w: longer than %d bytes", kind, MaxTopicLen) // [MQTT-4.7.3-3]
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not UTF-8", kind) // [MQTT-1.5.4-1]
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: contains U+0000", kind) // [MQTT-4.7.3-2]
	}
	return nil
}

// ParseShared splits "$share/{group}/{filter}". ok is false when filter is
// not in that form; the parts are not validated (see ValidFilter).
func ParseShared(filter string) (group, inner string, ok bool) {
	rest, found := strings.CutPrefix(filter, sharePrefix)
	if !found {
		return "", "", false
	}
	group, inner, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", false
	}
	return group, inner, true
}

// MatchFilter reports whether topic matches filter, with '+' for one level,
// '#' for the parent and any number of levels [MQTT-4.7.1-1], and the rule
// that a filter starting with a wildcard does not match a topic starting with
// '$' [MQTT-4.7.2-1]. A shared filter matches as its inner filter. It does
// not allocate, and it is written independently of the trie walk so tests can
// use it as an oracle.
func MatchFilter(filter, topic string) bool {
	if _, inner, ok := ParseShared(filter); ok {
		filter = inner
	}
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false // [MQTT-4.7.2-1]
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true // matches this level and everything below, or the parent alone
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#" // "sport/#" matches "sport" [MQTT-4.7.1-1]
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// isLiteral reports whether filter has no wildcard level.
func isLiteral(filter string) bool {
	return strings.IndexByte(filter, '+') < 0 && strings.IndexByte(filter, '#') < 0
}

// firstLevel returns the text before the first '/'.
func firstLevel(s string) string {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}
