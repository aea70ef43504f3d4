package main

import (
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/bridge"
	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/dashboard"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/metrics"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/store"
)

// clientSource joins what the dashboard reads: the loops' snapshot of the
// connections and the broker's sessions.
type clientSource struct {
	*loop.Server
	b *session.Broker
}

func (c clientSource) SubscriptionsOf(id string) ([]string, bool) { return c.b.SubscriptionsOf(id) }

// startMetrics serves /metrics, /debug/pprof/ and the dashboard on
// metrics_listener. Off loopback it asks for the credentials of
// metrics_user, a user of password_file, and refuses to start without one:
// the dashboard shows client ids and addresses, and pprof more.
func startMetrics(cfg *config.Config, b *session.Broker, srv *loop.Server, bridges *bridge.Manager, db *store.DB, logger *log.Logger) (*http.Server, error) {
	local, err := dashboard.Loopback(cfg.MetricsListener)
	if err != nil {
		return nil, fmt.Errorf("metrics_listener: %v", err)
	}
	var pw dashboard.Checker
	if cfg.MetricsUser != "" || !local {
		if cfg.MetricsUser == "" {
			return nil, fmt.Errorf("metrics_listener %s is not on loopback: set metrics_user to a user of password_file, or listen on 127.0.0.1", cfg.MetricsListener)
		}
		if cfg.Security.PasswordFile == "" {
			return nil, fmt.Errorf("metrics_user %s: no password_file to check its password", cfg.MetricsUser)
		}
		p, err := auth.LoadPasswords(cfg.Security.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("metrics_user: %v", err)
		}
		if !p.Has(cfg.MetricsUser) {
			return nil, fmt.Errorf("metrics_user %s is not in password_file %s", cfg.MetricsUser, cfg.Security.PasswordFile)
		}
		pw = p
	}
	ln, err := net.Listen("tcp", cfg.MetricsListener)
	if err != nil {
		return nil, fmt.Errorf("metrics_listener: %v", err)
	}
	extra := []prometheus.Collector{bridges.Collector(), metrics.ListenerCollector(srv.ListenerClients)}
	if db != nil {
		extra = append(extra, metrics.StoreCollector(db))
	}
	reg := metrics.NewRegistry(b, version, extra...)
	mux := metrics.Handler(reg)
	dashboard.New(reg, clientSource{srv, b}).Register(mux)
	ms := metrics.NewServer(dashboard.Protect(mux, cfg.MetricsUser, pw))
	go func() { _ = ms.Serve(ln) }()
	logger.Printf("Dashboard on http://%s/ (Prometheus metrics at /metrics)", ln.Addr())
	return ms, nil
}
