package loop

import (
	"context"

	"github.com/panjf2000/gnet/v2"

	"github.com/midge-mqtt/midge/session"
)

// Clients returns the state of every connected client, for the dashboard.
// Each event loop copies its own connections' state in one task of its
// queue (Execute), so nothing is locked on the message path and no loop is
// read while it runs. Any goroutine.
func (s *Server) Clients(ctx context.Context) ([]session.ClientStatus, error) {
	// The loops keep no list of their connections (a pointer pair per idle
	// connection): the registry's owners are grouped by loop instead.
	byLoop := map[*loopState][]*conn{}
	s.broker.EachOwnerTransport(func(t session.Transport) {
		if c, ok := t.(*conn); ok {
			byLoop[c.ls] = append(byLoop[c.ls], c)
		}
	})

	parts := make(chan []session.ClientStatus, len(byLoop))
	for ls, conns := range byLoop {
		err := ls.el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			var part []session.ClientStatus
			var st session.ClientStatus
			for _, c := range conns {
				// Loop-only from here: a connection closed since it was
				// noted is skipped.
				if !c.is(closed) && c.client.Status(&st) {
					part = append(part, st)
				}
			}
			parts <- part
			return nil
		}))
		if err != nil {
			parts <- nil // a loop that is stopping has nobody to show
		}
	}
	var all []session.ClientStatus
	for range byLoop {
		select {
		case p := <-parts:
			all = append(all, p...)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return all, nil
}

// ListenerClients is the number of connections open on each listener, by
// the address it listens on. Any goroutine once Start has returned.
func (s *Server) ListenerClients() map[string]int64 {
	m := make(map[string]int64, len(s.served))
	for i, l := range s.served {
		name := s.addrs[i].String()
		if l.TLS != nil {
			name += " (tls)"
		}
		if l.WebSocket {
			name += " (websockets)"
		}
		m[name] = l.conns.Load()
	}
	return m
}
