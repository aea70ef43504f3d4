package store

// The record encodings, for a cluster that moves a session from one node to
// another in the same form as the store keeps it.

// AppendSession appends s's record (not its client id) to dst.
func AppendSession(dst []byte, s *Session) []byte { return encodeSession(dst, s) }

// DecodeSession reads a record written by AppendSession.
func DecodeSession(clientID string, v []byte) (*Session, error) { return decodeSession(clientID, v) }

// AppendQueued appends q's record (not its client id and seq) to dst.
func AppendQueued(dst []byte, q *Queued) []byte { return encodeQueued(dst, q) }

// DecodeQueued reads a record written by AppendQueued.
func DecodeQueued(clientID string, seq uint64, v []byte) (*Queued, error) {
	return decodeQueued(clientID, seq, v)
}
