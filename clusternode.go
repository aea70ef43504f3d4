//go:build !nocluster

package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/midge-mqtt/midge/cluster"
	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/session"
)

// clusterNode is this broker's membership of a cluster (cluster.Node).
type clusterNode interface {
	Start() error
	Close() error
}

// clusterStore is the embedded NATS server's JetStream directory ("" with
// an external NATS or no cluster); name is the node's.
func clusterStore(cfg *config.Config, name string) string {
	c := cfg.Cluster
	if !c.Enabled() || c.NATSURL != "" {
		return ""
	}
	if c.Store != "" {
		return c.Store
	}
	return filepath.Join(cfg.PersistenceLocation, "midge-cluster-"+name)
}

// clusterStoreOf is clusterStore for the node name the cluster keys give
// (the host name by default).
func clusterStoreOf(cfg *config.Config) string {
	name := cfg.Cluster.NodeName
	if name == "" {
		name, _ = os.Hostname()
	}
	return clusterStore(cfg, name)
}

// newClusterNode makes this broker's cluster membership from the cluster_*
// keys. JetStream's store defaults to a directory inside
// persistence_location named after the node.
func newClusterNode(cfg *config.Config, broker *session.Broker, logger *log.Logger) (clusterNode, error) {
	c := cfg.Cluster
	name := c.NodeName
	if name == "" {
		h, err := os.Hostname()
		if err != nil || !config.NodeNameOK(h) {
			return nil, fmt.Errorf("%s: cluster_node_name: not set, and the host name %q cannot name a node (letters, digits, '-', '_')", c.Pos, h)
		}
		name = h
	}
	return cluster.New(broker, cluster.Config{Name: c.Name, NodeName: name, Listen: c.Listen, Peers: c.Peers,
		StoreDir: clusterStore(cfg, name), NATSURL: c.NATSURL, Logger: logger,
		// persistence_sync always: a message queued for an offline session
		// is acknowledged once stored on a quorum as well as on disk.
		QuorumAcks: cfg.Persistence && cfg.PersistenceSync == "always"})
}
