package bridge

import "testing"

// TestSentTable: what the bridge does with each PUBLISH the local session
// sends, given what happened to the message of that id before. A DUP copy
// of a message the remote has is never forwarded again: at QoS 2 that would
// be a second delivery of one message to an onward recipient [MQTT-4.3.3-2]
// (v5: [MQTT-4.3.3-10]).
func TestSentTable(t *testing.T) {
	type step struct {
		// "send"; "has" (remote acked, local ack reached) or "owe" (not
		// reached), or the two halves of "has" apart: "acking", "reached";
		// "connect"; "nottaken"; "owed" (owedAcks: ackQoS wants one of that
		// QoS); "pub"
		do     string
		dup    bool // for "pub"
		skip   bool // want, for "pub"
		ackQoS byte // want, for "pub"
	}
	pub := func(dup, skip bool, ackQoS byte) step { return step{do: "pub", dup: dup, skip: skip, ackQoS: ackQoS} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"new message is forwarded", []step{pub(false, false, 0)}},
		{"resend while in flight is the remote client's", []step{{do: "send"}, pub(true, true, 0)}},
		{"stale resend after the ack reached the broker", []step{{do: "send"}, {do: "has"}, pub(true, true, 0), pub(true, false, 0)}},
		{"ack reached, then a new local connection: the id's next DUP is a new message's", []step{
			{do: "send"}, {do: "has"}, {do: "connect"}, pub(true, false, 0)}},
		{"ack missed the local side: its resend is acked, not forwarded", []step{
			{do: "send"}, {do: "owe"}, {do: "connect"}, pub(true, true, 2), pub(true, false, 0)}},
		{"id used again by a first send", []step{{do: "send"}, {do: "has"}, pub(false, false, 0)}},
		{"not taken: the resend is forwarded", []step{{do: "send"}, {do: "nottaken"}, pub(true, false, 0)}},
		{"a resend drained while the local ack is being given", []step{
			{do: "send"}, {do: "acking"}, pub(true, true, 0), {do: "reached"}, pub(true, true, 0)}},
		{"id used again before the local ack returned: the new message stays in flight", []step{
			{do: "send"}, {do: "acking"}, pub(false, false, 0), {do: "send"}, {do: "reached"}, pub(true, true, 0), pub(true, true, 0)}},
		{"owed acks given at the next local connect", []step{
			{do: "send"}, {do: "owe"}, {do: "connect"}, {do: "owed", ackQoS: 2}, {do: "owed"}, {do: "reached"}, pub(true, true, 0), pub(true, false, 0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newSentTable()
			const id = 7
			for i, s := range tc.steps {
				switch s.do {
				case "send":
					st.sending(id)
				case "has", "owe":
					st.remoteHas(id)
					st.localAcked(id, 2, s.do == "has")
				case "connect":
					st.localConnect()
				case "nottaken":
					st.notTaken(id)
				case "acking":
					st.remoteHas(id)
				case "reached":
					st.localAcked(id, 2, true)
				case "owed":
					got := st.owedAcks()
					if s.ackQoS == 0 && len(got) != 0 || s.ackQoS != 0 && (len(got) != 1 || got[0] != owedAck{id, s.ackQoS}) {
						t.Fatalf("step %d: owed %v, want QoS %d", i, got, s.ackQoS)
					}
				case "pub":
					skip, q := st.skip(id, s.dup)
					if skip != s.skip || q != s.ackQoS {
						t.Fatalf("step %d: skip %v ack QoS %d, want %v %d", i, skip, q, s.skip, s.ackQoS)
					}
				}
			}
		})
	}
}
