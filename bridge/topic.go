package bridge

import (
	"strings"

	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/trie"
)

// The man page's table: prefixes are joined to the pattern as plain
// strings, and a message's topic is moved from one side to the other by
// taking one prefix off and putting the other on. The first `topic` line
// whose filter matches wins, as in mosquitto.

// outTopic maps a local topic to the remote one through the first out
// topic that matches it.
func outTopic(topics []config.BridgeTopic, local string) (string, bool) {
	for i := range topics {
		t := &topics[i]
		if t.Out() && trie.MatchFilter(t.LocalTopic(), local) && strings.HasPrefix(local, t.LocalPrefix) {
			return t.RemotePrefix + local[len(t.LocalPrefix):], true
		}
	}
	return "", false
}

// inTopic maps a remote topic to the local one through the first in topic
// that matches it.
func inTopic(topics []config.BridgeTopic, remote string) (string, bool) {
	for i := range topics {
		t := &topics[i]
		if t.In() && trie.MatchFilter(t.RemoteTopic(), remote) && strings.HasPrefix(remote, t.RemotePrefix) {
			return t.LocalPrefix + remote[len(t.RemotePrefix):], true
		}
	}
	return "", false
}
