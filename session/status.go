package session

// ClientStatus is what the dashboard shows of one connected client.
type ClientStatus struct {
	ID          string `json:"id"`
	Username    string `json:"username,omitempty"`
	Address     string `json:"address"`
	Version     byte   `json:"protocol"`
	Keepalive   uint16 `json:"keepalive"`
	Queued      int32  `json:"queued"`
	Inflight    int    `json:"inflight"`
	ConnectedAt int64  `json:"connected_since"` // unix seconds
	HeldBack    bool   `json:"held_back"`       // a publisher waiting for a full queue to drain
}

// Status fills st with c's state and reports whether c is a connected
// client (one being taken over is not: its session has a new owner).
// Loop-only: it reads what the owner loop alone changes, and takes no
// lock, so that a snapshot of every client never stalls a publisher.
func (c *Client) Status(st *ClientStatus) bool {
	if !c.connected || c.s == nil || c.kicked.Load() != 0 {
		return false
	}
	s := c.s
	*st = ClientStatus{
		ID:          c.rd.info.ClientID,
		Username:    c.rd.info.Username,
		Address:     c.t.RemoteAddr(),
		Version:     c.version,
		Keepalive:   c.keepalive,
		Queued:      s.queued.Load(),
		Inflight:    len(s.flows().inflight), // the owner loop alone changes the window
		ConnectedAt: int64(s.connectedAt.Load()),
		HeldBack:    c.waitingOn.Load() != nil,
	}
	return true
}

// SubscriptionsOf returns the filters the session of clientID subscribes
// to, and whether that session exists: the dashboard asks for one client's
// on demand. Any goroutine.
func (b *Broker) SubscriptionsOf(clientID string) ([]string, bool) {
	b.registry.mu.Lock()
	s := b.registry.m.get(clientID)
	b.registry.mu.Unlock()
	if s == nil {
		return nil, false
	}
	return b.subs.Filters(s), true
}

// EachOwnerTransport calls fn with the transport of every session's
// connected client, so that a transport can gather its connections without
// keeping a list of its own. fn runs under the registry's and the session's
// locks: it must only note the transport. Any goroutine.
func (b *Broker) EachOwnerTransport(fn func(Transport)) {
	b.registry.mu.Lock()
	defer b.registry.mu.Unlock()
	b.registry.m.each(func(s *Session) {
		s.mu.Lock()
		if c := s.owner; c != nil {
			fn(c.t)
		}
		s.mu.Unlock()
	})
}
