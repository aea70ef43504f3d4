package trie

import (
	"errors"
	"strings"
	"testing"
)

// matchCases is the table of filter/topic pairs used by MatchFilter, the trie
// and the retained store alike.
var matchCases = []struct {
	filter, topic string
	match         bool
	why           string
}{
	{"sport/tennis/player1", "sport/tennis/player1", true, "literal"},
	{"sport/tennis/player1", "sport/tennis/player2", false, "literal"},
	{"sport/tennis", "sport/tennis/player1", false, "literal is not a prefix match"},
	{"sport/tennis/player1/#", "sport/tennis/player1", true, "# matches the parent [MQTT-4.7.1-1]"},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true, "[MQTT-4.7.1-1]"},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true, "[MQTT-4.7.1-1]"},
	{"sport/#", "sport", true, "# matches the parent [MQTT-4.7.1-1]"},
	{"sport/#", "sports", false, "levels, not prefixes"},
	{"#", "sport/tennis", true, "# alone matches every topic [MQTT-4.7.1-1]"},
	{"#", "/", true, "# matches empty levels"},
	{"sport/tennis/+", "sport/tennis/player1", true, "+ one level [MQTT-4.7.1-2]"},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false, "+ exactly one level [MQTT-4.7.1-2]"},
	{"sport/tennis/+", "sport/tennis", false, "+ needs a level [MQTT-4.7.1-2]"},
	{"sport/+", "sport/", true, "+ matches an empty level [MQTT-4.7.1-2]"},
	{"sport/+", "sport", false, "[MQTT-4.7.1-2]"},
	{"+/+", "/finance", true, "empty first level [MQTT-4.7.1-2]"},
	{"/+", "/finance", true, "[MQTT-4.7.1-2]"},
	{"+", "/finance", false, "two levels [MQTT-4.7.1-2]"},
	{"+", "finance", true, "[MQTT-4.7.1-2]"},
	{"a//b", "a//b", true, "empty levels are levels"},
	{"a/+/b", "a//b", true, "+ matches the empty level"},
	{"a/b", "a//b", false, "empty levels are levels"},
	{"/a", "/a", true, "leading empty level"},
	{"/a", "a", false, "leading empty level"},
	{"+/a", "/a", true, "+ matches the leading empty level"},
	{"a/", "a", false, "trailing empty level"},
	{"a/+/#", "a/b", true, "+ then # matching the parent"},
	{"a/+/#", "a", false, "+ needs its level"},
	{"+/#", "a", true, "[MQTT-4.7.1-1]"},
	{"+/+/telemetry", "fleet/s1/telemetry", true, "[MQTT-4.7.1-2]"},
	{"#", "$SYS/broker/uptime", false, "$ topics hidden from # [MQTT-4.7.2-1]"},
	{"+/broker/uptime", "$SYS/broker/uptime", false, "$ topics hidden from + [MQTT-4.7.2-1]"},
	{"+/#", "$SYS/x", false, "[MQTT-4.7.2-1]"},
	{"+/x", "$SYS/x", false, "[MQTT-4.7.2-1]"},
	{"$SYS/#", "$SYS/broker/uptime", true, "[MQTT-4.7.2-1]"},
	{"$SYS/#", "$SYS", true, "[MQTT-4.7.2-1]"},
	{"$SYS/+/uptime", "$SYS/broker/uptime", true, "[MQTT-4.7.2-1]"},
	{"$SYS/x", "$SYS/x", true, "literal $ filter"},
	{"a/$SYS", "a/$SYS", true, "$ rule only at the first level"},
	{"a/+", "a/$SYS", true, "$ rule only at the first level [MQTT-4.7.2-1]"},
	{"Accounts", "accounts", false, "case sensitive [MQTT-4.7.3-4]"},
	{"$share/g/a/+", "a/b", true, "a shared filter matches as its inner filter"},
	{"$share/g/#", "$SYS/x", false, "[MQTT-4.7.2-1]"},
}

func TestMatchFilter(t *testing.T) {
	for _, c := range matchCases {
		if got := MatchFilter(c.filter, c.topic); got != c.match {
			t.Errorf("MatchFilter(%q, %q) = %v, want %v (%s)", c.filter, c.topic, got, c.match, c.why)
		}
	}
}

func TestValidFilter(t *testing.T) {
	cases := []struct {
		filter string
		ok     bool
		why    string
	}{
		{"a/b/c", true, ""},
		{"#", true, "[MQTT-4.7.1-1]"},
		{"a/#", true, "[MQTT-4.7.1-1]"},
		{"a/#/b", false, "# must be last [MQTT-4.7.1-1]"},
		{"a#", false, "# alone in its level [MQTT-4.7.1-1]"},
		{"a/b#", false, "[MQTT-4.7.1-1]"},
		{"+", true, "[MQTT-4.7.1-2]"},
		{"+/a/+", true, "[MQTT-4.7.1-2]"},
		{"a+", false, "+ alone in its level [MQTT-4.7.1-2]"},
		{"a/+b/c", false, "[MQTT-4.7.1-2]"},
		{"/", true, "two empty levels"},
		{"a//b", true, "empty level"},
		{"", false, "at least one character [MQTT-4.7.3-1]"},
		{"a\x00b", false, "no U+0000 [MQTT-4.7.3-2]"},
		{"a/\xff", false, "UTF-8 [MQTT-1.5.4-1]"},
		{strings.Repeat("a", MaxTopicLen), true, "[MQTT-4.7.3-3]"},
		{strings.Repeat("a", MaxTopicLen+1), false, "[MQTT-4.7.3-3]"},
		{"$share/g/a/+", true, "[MQTT-4.8.2-2]"},
		{"$share/g/#", true, "[MQTT-4.8.2-2]"},
		{"$share//a", false, "empty share name [MQTT-4.8.2-1]"},
		{"$share/g+/a", false, "wildcard in share name [MQTT-4.8.2-1]"},
		{"$share/g#/a", false, "[MQTT-4.8.2-1]"},
		{"$share/g", false, "no filter [MQTT-4.8.2-2]"},
		{"$share/g/", false, "empty filter [MQTT-4.8.2-2]"},
		{"$share/g/a#", false, "invalid inner filter"},
		{"$share", false, "[MQTT-4.8.2-2]"},
		{"$sharex/a", true, "not a shared filter"},
	}
	for _, c := range cases {
		err := ValidFilter(c.filter)
		if (err == nil) != c.ok {
			t.Errorf("ValidFilter(%.40q) = %v, want ok=%v (%s)", c.filter, err, c.ok, c.why)
		}
		if err != nil && (!errors.Is(err, ErrInvalidFilter) || !strings.HasPrefix(err.Error(), "trie: ")) {
			t.Errorf("ValidFilter(%.40q) error %q: want ErrInvalidFilter with the package prefix", c.filter, err)
		}
	}
}

func TestValidTopic(t *testing.T) {
	cases := []struct {
		topic string
		ok    bool
	}{
		{"a/b", true}, {"/", true}, {"$SYS/x", true},
		{"a/+", false}, {"#", false}, {"a#b", false}, // [MQTT-4.7.0-1]
		{"", false},     // [MQTT-4.7.3-1]
		{"\x00", false}, // [MQTT-4.7.3-2]
	}
	for _, c := range cases {
		if err := ValidTopic(c.topic); (err == nil) != c.ok {
			t.Errorf("ValidTopic(%q) = %v, want ok=%v", c.topic, err, c.ok)
		}
	}
}

func TestParseShared(t *testing.T) {
	cases := []struct {
		filter, group, inner string
		ok                   bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share//a", "", "a", true},
		{"$share/g", "", "", false},
		{"a/b", "", "", false},
		{"$SHARE/g/a", "", "", false},
	}
	for _, c := range cases {
		g, in, ok := ParseShared(c.filter)
		if g != c.group || in != c.inner || ok != c.ok {
			t.Errorf("ParseShared(%q) = %q, %q, %v; want %q, %q, %v", c.filter, g, in, ok, c.group, c.inner, c.ok)
		}
	}
}

func TestMatchFilterAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { MatchFilter("a/+/c/#", "a/b/c/d/e") }); n != 0 {
		t.Errorf("MatchFilter allocates %v times", n)
	}
}
