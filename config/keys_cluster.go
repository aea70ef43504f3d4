package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Cluster holds midge's own cluster_* keys. A node is in a cluster when any
// of them is set; without them the broker never starts NATS.
type Cluster struct {
	Name     string   // cluster_name (default "midge")
	NodeName string   // cluster_node_name (default: the host name)
	Listen   string   // cluster_listen HOST:PORT: the NATS route port
	Peers    []string // cluster_peers HOST:PORT ...: seed routes (a node may list itself)
	Store    string   // cluster_store DIR: JetStream storage (default: under persistence_location)
	NATSURL  string   // cluster_nats_url: an external NATS; then no embedded server

	Pos Pos // the first cluster_* line, for errors about the whole block
	set bool
}

// Enabled reports whether any cluster key was given.
func (c *Cluster) Enabled() bool { return c.set }

func init() {
	for k, h := range map[string]handler{
		"cluster_name": clusterKey(func(c *Cluster, l *line) error {
			v, err := l.one()
			if err == nil && !nodeNameOK(v) {
				err = l.errorf("expected letters, digits, '-' or '_', got %q", v)
			}
			c.Name = v
			return err
		}),
		"cluster_node_name": clusterKey(func(c *Cluster, l *line) error {
			v, err := l.one()
			if err == nil && !nodeNameOK(v) {
				err = l.errorf("expected letters, digits, '-' or '_' (at most 64), got %q", v)
			}
			c.NodeName = v
			return err
		}),
		"cluster_listen": clusterKey(func(c *Cluster, l *line) error {
			v, err := l.one()
			if err == nil {
				err = hostPort(l, v)
			}
			c.Listen = v
			return err
		}),
		"cluster_peers": clusterKey(func(c *Cluster, l *line) error {
			f := strings.Fields(l.value)
			if len(f) == 0 {
				return l.errorf("missing value")
			}
			for _, v := range f {
				if err := hostPort(l, v); err != nil {
					return err
				}
			}
			c.Peers = append(c.Peers, f...)
			return nil
		}),
		"cluster_store": clusterKey(func(c *Cluster, l *line) error {
			v, err := l.str()
			c.Store = v
			return err
		}),
		"cluster_nats_url": clusterKey(func(c *Cluster, l *line) error {
			v, err := l.one()
			if err != nil {
				return err
			}
			for _, s := range strings.Split(v, ",") {
				u, perr := url.Parse(s)
				if perr != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
					return l.errorf("expected nats://HOST:PORT (comma-separated for several), got %q", s)
				}
			}
			c.NATSURL = v
			return nil
		}),
	} {
		handlers[k] = h
	}
}

// clusterKey wraps a cluster key's parser: it marks the node as clustered
// and remembers where the first cluster line is.
func clusterKey(set func(c *Cluster, l *line) error) handler {
	return func(p *parser, l *line) error {
		c := &p.c.Cluster
		if !c.set {
			c.set, c.Pos = true, l.pos
		}
		return set(c, l)
	}
}

func hostPort(l *line, v string) error {
	_, port, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 {
		return l.errorf("expected HOST:PORT, got %q", v)
	}
	return nil
}

// nodeNameOK accepts names that are safe inside NATS subjects and KV keys.
func nodeNameOK(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NodeNameOK reports whether s may name a cluster node (the host name is
// the default, and is checked with this when it is used).
func NodeNameOK(s string) bool { return nodeNameOK(s) }

// check judges the cluster keys together, at the first cluster line.
func (c *Cluster) check() error {
	if !c.set {
		return nil
	}
	if c.NATSURL != "" {
		if c.Listen != "" || len(c.Peers) > 0 || c.Store != "" {
			return &Error{Pos: c.Pos, Key: "cluster_nats_url",
				Msg: "cluster_listen, cluster_peers and cluster_store configure the embedded NATS server; with an external one (cluster_nats_url) leave them out"}
		}
		return nil
	}
	if c.Listen == "" {
		return &Error{Pos: c.Pos, Key: "cluster_listen", Msg: "a cluster node needs cluster_listen HOST:PORT (its route port) unless cluster_nats_url names an external NATS"}
	}
	return nil
}
