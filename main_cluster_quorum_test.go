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
// on node1 for an offline persistent session there are acknowledged only
// once replicated on a quorum, so a SIGKILL of node1 right after the last
// PUBACK (no pause) loses none of them: the session, resumed on node3,
// delivers all 1,000 [MQTT-4.3.2-2].
func TestClusterQuorumAckKill(t *testing.T) {
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

	sess := pahoClient(t, ps[0].addr, "keeper", false, nil)
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
	ps[0].stop(t, syscall.SIGKILL) // at once: every acknowledged message is on a quorum
	ps[1].logLine(t, `took over \d+ sessions of node node1`, 30*time.Second)

	dups := resumeKeeper(t, ps[2].addr, total) // every acknowledged message
	t.Logf("%d of %d resumed, %d duplicates", total, total, dups)
}
