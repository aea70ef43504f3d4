package store

import (
	"reflect"
	"testing"
)

// TestSessionIdentity: a session record keeps its client's username (read
// ACLs check queued messages against it after a restart), and records
// written before it was stored (version 1) still decode, without one.
func TestSessionIdentity(t *testing.T) {
	s := &Session{ClientID: "c", Version: 4, Expiry: 60, Username: "alice", HasUsername: true,
		Subscriptions: []Subscription{{Filter: "a/#", QoS: 1}}}
	got, err := decodeSession("c", encodeSession(nil, s))
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, s)
	}
	v1 := []byte{recordV1, 4, 60, 0, 0, 0, 0} // version, level, expiry, disconnected, no subscriptions, no will, will delay
	got, err = decodeSession("old", v1)
	if want := (&Session{ClientID: "old", Version: 4, Expiry: 60}); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("v1 record: %+v, %v; want %+v", got, err, want)
	}
	if _, err := decodeSession("bad", append([]byte{9}, v1[1:]...)); err == nil {
		t.Fatal("record version 9 decoded")
	}
}
