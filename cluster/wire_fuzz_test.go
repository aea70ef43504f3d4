package cluster

import (
	"encoding/binary"
	"fmt"
	"strings"
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
		within := func(token uint32, id uint64, client, shared []byte, p *codec.Packet) {
			if len(client)+len(shared)+len(p.Topic)+len(p.Payload) > len(body) {
				t.Fatalf("a record larger than its batch")
			}
		}
		_ = eachRecord(body, &p, within)
		_ = eachRecordV1(body, &p, within)
	})
}

// TestEachRecordV1: a batch in the layout of a node before forward ids
// ('B': token and frame per record) is read, with id 0, and an older
// node's relay token taken as its ordinary subscribers'; the current layout
// has kind bytes of its own, which an older node drops as unknown instead
// of misreading them.
func TestEachRecordV1(t *testing.T) {
	var body []byte
	for _, tok := range []uint64{0, 5, relayToken} {
		body = binary.AppendUvarint(body, tok)
		p := &codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 1, Topic: []byte("a/b"), Payload: []byte(fmt.Sprint(tok))}
		body = p.Encode(body, codec.Version5)
	}
	var got []string
	var p codec.Packet
	err := eachRecordV1(body, &p, func(token uint32, id uint64, client, shared []byte, p *codec.Packet) {
		got = append(got, fmt.Sprintf("%d/%d/%s/%s", token, id, p.Topic, p.Payload))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("0/0/a/b/0 5/0/a/b/5 0/0/a/b/%d", relayToken)
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("got %s, want %s", g, want)
	}
	if kindBatch == kindBatchV1 || kindChunk == kindChunkV1 || kindBatch == kindChunkV1 || kindChunk == kindBatchV1 {
		t.Fatal("the current layout must not share a kind byte with the old one")
	}
}
