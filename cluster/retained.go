package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// Retained messages: the bucket "midge-<cluster>-retained" holds one key
// per topic (a hash of it); the value names the node that made the change
// and its number there, then the message as an MQTT 5 PUBLISH (an empty
// payload: cleared). Every node, its author included, applies the bucket's
// order, so concurrent changes on two nodes converge to the bucket's last;
// an author skips the echo of its own change when it has made a newer one.

func retainedKey(topic []byte) string {
	h := sha256.Sum256(topic)
	return hex.EncodeToString(h[:16])
}

// Retained implements session.Cluster: a client on this node set (m) or
// cleared the retained message of topic. Called on the publisher's loop:
// the value is encoded here and written off the loop.
func (n *Node) Retained(topic []byte, m *session.Message) {
	var p codec.Packet
	if m != nil {
		fillPacket(&p, m, time.Now().UnixNano())
	} else {
		p.Type, p.Retain, p.Topic = codec.PUBLISH, true, topic
	}
	n.retMu.Lock()
	n.retSeq++
	seq := n.retSeq
	n.retLast[string(topic)] = seq
	n.retMu.Unlock()
	val := append([]byte{byte(len(n.cfg.NodeName))}, n.cfg.NodeName...)
	val = binary.BigEndian.AppendUint64(val, seq)
	val = p.Encode(val, codec.Version5)
	if len(val) > n.max {
		n.log.Printf("cluster %s: retained message on %q is %d bytes, over NATS's %d: kept on this node only",
			n.cfg.Name, topic, len(val), n.max)
		return
	}
	n.imu.Lock()
	n.ops = append(n.ops, kvOp{key: retainedKey(topic), val: val, retained: true})
	if n.writing {
		select {
		case n.opsReady <- struct{}{}:
		default:
		}
	}
	n.imu.Unlock()
}

// applyRetained takes one entry of the retained bucket.
func (n *Node) applyRetained(e jetstream.KeyValueEntry) (topic string, ok bool) {
	v := e.Value()
	if e.Operation() != jetstream.KeyValuePut || len(v) < 1 || len(v) < 1+int(v[0])+8 {
		return "", false
	}
	origin := string(v[1 : 1+v[0]])
	seq := binary.BigEndian.Uint64(v[1+int(v[0]):])
	frame := v[1+int(v[0])+8:]
	var p codec.Packet
	dec := codec.Decoder{Version: codec.Version5}
	if _, err := dec.Decode(frame, &p); err != nil || p.Type != codec.PUBLISH || len(p.Topic) == 0 {
		n.log.Printf("cluster %s: unreadable retained entry %s", n.cfg.Name, e.Key())
		return "", false
	}
	if origin == n.cfg.NodeName {
		n.retMu.Lock()
		newer := n.retLast[string(p.Topic)] > seq
		n.retMu.Unlock()
		if newer {
			return string(p.Topic), true // this node changed it again since
		}
	}
	n.b.ApplyRetained(&p)
	n.Stats.RetainedReplicas.Add(1)
	return string(p.Topic), true
}

// loadRetained reads the whole bucket into the retained store, drops the
// local retained messages the cluster does not have (a node's own store may
// hold what was cleared while it was down), then keeps following it
// (watch.go; a new watch after a lost one applies the bucket again, clears
// included, but drops nothing: a local change may not be written yet).
func (n *Node) loadRetained(ctx context.Context) error {
	initial := map[string]bool{}
	return n.follow(ctx, n.retKV, follower{what: "retained",
		begin: func(bool) {},
		apply: func(e jetstream.KeyValueEntry) {
			if t, ok := n.applyRetained(e); ok && initial != nil {
				initial[t] = true
			}
		},
		ready: func(again bool) {
			if again || initial == nil {
				return
			}
			for _, t := range n.b.RetainedTopics() {
				if !initial[t] {
					n.b.ApplyRetained(&codec.Packet{Type: codec.PUBLISH, Retain: true, Topic: []byte(t)})
				}
			}
			initial = nil
		},
	})
}
