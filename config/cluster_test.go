package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestClusterKeys(t *testing.T) {
	c, err := ParseReader("c.conf", strings.NewReader(`listener 1883
cluster_name prod
cluster_node_name node-a
cluster_listen 127.0.0.1:6222
cluster_peers 127.0.0.1:6222 127.0.0.1:6223
cluster_peers 127.0.0.1:6224
cluster_store /var/lib/midge/js
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Cluster{Name: "prod", NodeName: "node-a", Listen: "127.0.0.1:6222",
		Peers: []string{"127.0.0.1:6222", "127.0.0.1:6223", "127.0.0.1:6224"}, Store: "/var/lib/midge/js",
		Pos: Pos{File: "c.conf", Line: 2}, set: true}
	if !reflect.DeepEqual(c.Cluster, want) || !c.Cluster.Enabled() {
		t.Fatalf("got %+v\nwant %+v", c.Cluster, want)
	}
	c, err = ParseReader("c.conf", strings.NewReader("cluster_nats_url nats://127.0.0.1:4222,nats://127.0.0.1:4223\n"))
	if err != nil || c.Cluster.NATSURL != "nats://127.0.0.1:4222,nats://127.0.0.1:4223" {
		t.Fatalf("%v %+v", err, c.Cluster)
	}
	if c, _ := ParseReader("c.conf", strings.NewReader("listener 1883\n")); c.Cluster.Enabled() {
		t.Fatal("no cluster keys: not a cluster")
	}
}

// A bad cluster line names FILE:LINE: KEY, and the broker refuses to start.
func TestClusterKeyErrors(t *testing.T) {
	cases := []struct{ file, want string }{
		{"cluster_name a.b\n", "c.conf:1: cluster_name: expected letters"},
		{"cluster_name\n", "c.conf:1: cluster_name: missing value"},
		{"cluster_node_name x y\n", "c.conf:1: cluster_node_name: expected one value"},
		{"cluster_node_name n*\n", "c.conf:1: cluster_node_name: expected letters"},
		{"cluster_node_name " + strings.Repeat("n", 65) + "\n", "c.conf:1: cluster_node_name: expected letters"},
		{"cluster_listen 6222\n", "c.conf:1: cluster_listen: expected HOST:PORT"},
		{"cluster_listen 127.0.0.1:70000\n", "c.conf:1: cluster_listen: expected HOST:PORT"},
		{"cluster_listen 127.0.0.1:0\ncluster_peers 127.0.0.1:1 nowhere\n", "c.conf:2: cluster_peers: expected HOST:PORT, got \"nowhere\""},
		{"cluster_peers\n", "c.conf:1: cluster_peers: missing value"},
		{"cluster_store\n", "c.conf:1: cluster_store: missing value"},
		{"cluster_nats_url http://x:1\n", "c.conf:1: cluster_nats_url: expected nats://HOST:PORT"},
		{"cluster_nats_url nats://\n", "c.conf:1: cluster_nats_url: expected nats://HOST:PORT"},
		{"# a\ncluster_name x\n", "c.conf:2: cluster_listen: a cluster node needs cluster_listen"},
		{"cluster_nats_url nats://127.0.0.1:4222\ncluster_listen 127.0.0.1:0\n", "c.conf:1: cluster_nats_url: cluster_listen, cluster_peers and cluster_store"},
	}
	for _, tc := range cases {
		_, err := ParseReader("c.conf", strings.NewReader(tc.file))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q...", tc.file, err, tc.want)
		}
	}
}
