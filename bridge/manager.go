package bridge

import (
	"log"
	"sort"
	"sync"

	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/session"
)

// Manager runs the bridges of a configuration and applies a new one on
// reload: bridges added are started, removed ones stopped (their local
// session discarded), changed ones restarted; the others, and every client,
// are left alone.
type Manager struct {
	broker *session.Broker
	log    *log.Logger

	mu      sync.Mutex
	bridges map[string]*Bridge
}

// NewManager makes a manager with no bridge.
func NewManager(b *session.Broker, logger *log.Logger) *Manager {
	return &Manager{broker: b, log: logger, bridges: map[string]*Bridge{}}
}

// Check reports an error in the files the bridges of cfgs name (TLS).
func Check(cfgs []*config.Bridge) error {
	for _, c := range cfgs {
		if err := CheckTLS(&Bridge{cfg: c}); err != nil {
			return err
		}
	}
	return nil
}

// Apply makes the running bridges those of cfgs.
func (m *Manager) Apply(cfgs []*config.Bridge) error {
	if err := Check(cfgs); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]*config.Bridge{}
	for _, c := range cfgs {
		want[c.Name] = c
	}
	for name, br := range m.bridges {
		c, keep := want[name]
		if keep && br.cfg.Same(c) {
			delete(want, name)
			continue
		}
		if keep {
			m.log.Printf("Bridge %s: configuration changed; restarting it.", name)
		} else {
			m.log.Printf("Bridge %s: removed from the configuration; stopping it.", name)
		}
		// A changed bridge keeps its local session (and what is queued in
		// it) unless its local client id changed.
		br.Stop(!keep || c.LocalClientID != br.cfg.LocalClientID)
		delete(m.bridges, name)
	}
	for _, c := range cfgs {
		if _, ok := want[c.Name]; !ok {
			continue
		}
		br := New(c, m.broker, m.log)
		if err := br.Start(); err != nil {
			return err
		}
		m.bridges[c.Name] = br
	}
	return nil
}

// Stop stops every bridge, keeping their local sessions.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, br := range m.bridges {
		br.Stop(false)
		delete(m.bridges, name)
	}
}

// Bridges returns the running bridges, by name.
func (m *Manager) Bridges() []*Bridge {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Bridge, 0, len(m.bridges))
	for _, br := range m.bridges {
		out = append(out, br)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cfg.Name < out[j].cfg.Name })
	return out
}

// Each calls f with every bridge's counters, for $SYS and /metrics.
func (m *Manager) Each(f func(name string, s *Stats, queued int)) {
	for _, br := range m.Bridges() {
		f(br.cfg.Name, &br.Stats, br.Queued())
	}
}
