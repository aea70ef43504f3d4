//go:build nocluster

package main

import (
	"fmt"
	"log"

	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/session"
)

// clusterNode is this broker's membership of a cluster.
type clusterNode interface {
	Start() error
	Close() error
}

// newClusterNode refuses: this build (-tags nocluster, for small boards)
// leaves the cluster, and the NATS server it embeds, out.
func newClusterNode(cfg *config.Config, _ *session.Broker, _ *log.Logger) (clusterNode, error) {
	return nil, fmt.Errorf("%s: cluster keys: this midge was built without the cluster (-tags nocluster)", cfg.Cluster.Pos)
}

// clusterStoreOf: no cluster, no cluster store.
func clusterStoreOf(*config.Config) string { return "" }
