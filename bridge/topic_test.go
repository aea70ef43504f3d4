package bridge

import (
	"testing"

	"github.com/midge-mqtt/midge/config"
)

// Every row of mosquitto.conf(5)'s table of prefixes, both ways.
func TestTopicMapping(t *testing.T) {
	cases := []struct {
		pattern, lp, rp string
		local, remote   string
	}{
		{"pattern", "L/", "R/", "L/pattern", "R/pattern"},
		{"pattern", "L/", "", "L/pattern", "pattern"},
		{"pattern", "", "R/", "pattern", "R/pattern"},
		{"pattern", "", "", "pattern", "pattern"},
		{"", "local", "remote", "local", "remote"},
		{"#", "L/", "R/", "L/a/b", "R/a/b"},
		{"a/+", "x", "y", "xa/b", "ya/b"}, // plain string join: no slash added
	}
	for _, c := range cases {
		topics := []config.BridgeTopic{{Pattern: c.pattern, Direction: "both", LocalPrefix: c.lp, RemotePrefix: c.rp}}
		if got, ok := outTopic(topics, c.local); !ok || got != c.remote {
			t.Errorf("%+v out: %q -> %q %v", c, c.local, got, ok)
		}
		if got, ok := inTopic(topics, c.remote); !ok || got != c.local {
			t.Errorf("%+v in: %q -> %q %v", c, c.remote, got, ok)
		}
	}
	in := []config.BridgeTopic{{Pattern: "a", Direction: "in"}, {Pattern: "#", Direction: "out", LocalPrefix: "o/"}}
	if _, ok := outTopic(in, "a"); ok {
		t.Error("an in topic maps out")
	}
	if _, ok := inTopic(in, "o/x"); ok {
		t.Error("an out topic maps in")
	}
	first := []config.BridgeTopic{{Pattern: "#", Direction: "out", RemotePrefix: "1/"}, {Pattern: "a", Direction: "out", RemotePrefix: "2/"}}
	if got, _ := outTopic(first, "a"); got != "1/a" {
		t.Errorf("first matching line wins: %q", got)
	}
}
