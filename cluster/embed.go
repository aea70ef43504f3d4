package cluster

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedMaxPayload is the embedded server's largest NATS message: bigger
// forwards are chunked, bigger retained messages stay node-local. NATS
// advises against more than 8 MiB.
const embeddedMaxPayload = 8 << 20

// A NATS route that goes silent without closing (a cut link drops its
// packets) is closed once routePingsOut pings sent every routePing go
// unanswered (10-15 s), and NATS dials it again every second. NATS's
// defaults (2 minutes, 2 pings) leave it open for minutes, its TCP
// retransmissions backing off meanwhile: after a real cut of 30-60 s the
// peers heard each other again only at the next retransmission, 24-28 s
// after the link was back (test/chaos). Pings every 2 s were suspected of
// closing busy routes under load, hence 5 s and two unanswered.
const (
	routePing     = 5 * time.Second
	routePingsOut = 2
)

// embedded starts this node's own nats-server: a route port for the peers, JetStream for the buckets.
func (n *Node) embedded(ctx context.Context) (*server.Server, error) {
	host, ps, err := net.SplitHostPort(n.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster: cluster_listen %q: %w", n.cfg.Listen, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return nil, fmt.Errorf("cluster: cluster_listen %q: bad port", n.cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: n.cfg.NodeName,
		// midge talks to it in process; its client port stays on loopback
		// (with DontListen, nats-server 2.15 never starts its routes).
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   n.cfg.StoreDir,
		MaxPayload: embeddedMaxPayload,
		NoLog:      true,
		NoSigs:     true,
	}
	peers := n.cfg.Peers
	if len(peers) == 0 && port > 0 {
		peers = []string{n.cfg.Listen} // a cluster of one for now, others may join
	}
	if len(peers) > 0 {
		opts.Cluster = server.ClusterOpts{Name: n.cfg.Name, Host: host, Port: port, PingInterval: routePing, MaxPingsOut: routePingsOut}
		for _, p := range peers {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: p})
		}
	}
	if n.cfg.natsOpts != nil {
		n.cfg.natsOpts(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: NATS server: %w", err)
	}
	go ns.Start()
	deadline, _ := ctx.Deadline()
	if !ns.ReadyForConnections(time.Until(deadline)) {
		ns.Shutdown()
		return nil, fmt.Errorf("cluster: NATS server not ready (route port %s)", n.cfg.Listen)
	}
	if a := ns.ClusterAddr(); a != nil {
		n.log.Printf("cluster %s: node %s: routes on %s, peers %v", n.cfg.Name, n.cfg.NodeName, a, n.cfg.Peers)
	}
	return ns, nil
}
