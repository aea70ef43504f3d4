package cluster

import (
	"testing"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// FuzzEachRecord: a batch body from the wire, however malformed, is read
// without a panic, and what it yields is within the body.
func FuzzEachRecord(f *testing.F) {
	m := &session.Message{Topic: []byte("a/b"), Payload: []byte("x"), QoS: 1}
	batch := appendRecord(nil, m, 0, 0)
	batch = appendRecord(batch, m, 7, 0)
	f.Add(batch[1:])
	p := &codec.Packet{Type: codec.PUBLISH, QoS: 1, Topic: []byte("a/b"), Payload: []byte("y")}
	relayed := appendRelayed(nil, p, 99, "client", "$share/g/a/b")
	relayed = appendRelayed(relayed, p, 100, "client", "")
	f.Add(relayed[1:])
	f.Add([]byte{})
	f.Add(make([]byte, batchHeader-1))
	f.Fuzz(func(t *testing.T, body []byte) {
		var p codec.Packet
		_ = eachRecord(body, &p, func(token uint32, id uint64, client, shared []byte, p *codec.Packet) {
			if len(client)+len(shared)+len(p.Topic)+len(p.Payload) > len(body) {
				t.Fatalf("a record larger than its batch")
			}
		})
	})
}
