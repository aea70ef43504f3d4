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
	dir := c.Store
	if dir == "" && c.NATSURL == "" {
		dir = filepath.Join(cfg.PersistenceLocation, "midge-cluster-"+name)
	}
	return cluster.New(broker, cluster.Config{Name: c.Name, NodeName: name, Listen: c.Listen, Peers: c.Peers,
		StoreDir: dir, NATSURL: c.NATSURL, Logger: logger})
}
