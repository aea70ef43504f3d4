package main

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestClusterQuorumAckKill runs three `midge` processes with persistence
// (persistence_sync always, the default): 1,000 QoS 1 messages published
// on node1 for an offline persistent session are acknowledged only once
// replicated on a quorum, so a SIGKILL of the session's node right after
// the last PUBACK (no pause) loses none of them: the session, resumed on
// node3, delivers all 1,000 [MQTT-4.3.2-2]. local: the session is on
// node1 itself; forwarded: on node2, which confirms to node1 what it
// queued and replicated before node1 acknowledges.
func TestClusterQuorumAckKill(t *testing.T) {
	for _, tc := range []struct {
		name    string
		session int // the node index of the offline session; the publisher is on node1
		adopter int // the survivor that takes the dead node's sessions (the lowest name)
	}{
		{"local", 0, 1},
		{"forwarded", 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) { testQuorumAckKill(t, tc.session, tc.adopter) })
	}
}

func testQuorumAckKill(t *testing.T, session, adopter int) {
	ps := writeClusterConfigs(t, 3)
	for _, p := range ps {
		f, err := os.OpenFile(p.conf, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, "persistence true")
		f.Close()
		p.start(t)
	}
	for _, p := range ps {
		p.wait(t)
	}
	for _, p := range ps { // every node hears the others: the adopter must see the death
		p.logLine(t, `2 peers up`, 30*time.Second)
	}

	sess := pahoClient(t, ps[session].addr, "keeper", false, nil)
	waitToken(t, sess.Subscribe("kq/#", 1, nil), "subscribe")
	sess.Disconnect(100)

	pub := pahoClient(t, ps[0].addr, "kq-pub", true, nil)
	defer pub.Disconnect(0)
	const total = 1000
	var toks []mqtt.Token
	for i := range total {
		toks = append(toks, pub.Publish("kq/x", 1, false, fmt.Sprint(i)))
	}
	for _, tok := range toks {
		waitToken(t, tok, "publish")
	}
	ps[session].stop(t, syscall.SIGKILL) // at once: every acknowledged message is on a quorum
	ps[adopter].logLine(t, fmt.Sprintf(`took over \d+ sessions of node node%d`, session+1), 30*time.Second)

	dups := resumeKeeper(t, ps[2].addr, total) // every acknowledged message
	t.Logf("%d of %d resumed, %d duplicates", total, total, dups)
}
