package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Joining: the nodes of a cluster usually start together, so each node's
// first JetStream requests race the routes between the servers and the
// election of JetStream's meta leader. A request sent before this server has
// a route to the meta leader gets no answer at all (nats.go then waits its
// full 5 s), and requests of three nodes making the same stream at once
// can go unanswered too. So a node first waits until its server follows a
// meta leader, then makes each request with a short bound that grows on
// every retry (a loaded machine answers slowly, not never), logs what it
// waits for, and gives up with an error at JoinTimeout.

// attemptTimeout bounds the attempt'th try of a JetStream request.
func attemptTimeout(attempt int) time.Duration {
	return min(time.Second<<min(attempt, 4), 8*time.Second)
}

// retryJS calls f, each call bounded by attemptTimeout, until it succeeds or
// ctx ends. The first failure and every change of error are logged.
func (n *Node) retryJS(ctx context.Context, what string, f func(context.Context) error) error {
	last := ""
	start := time.Now()
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout(attempt))
		err := f(actx)
		cancel()
		if err == nil {
			if attempt > 0 {
				n.log.Printf("cluster %s: JetStream answered (%s) after %d tries, %v", n.cfg.Name, what, attempt+1,
					time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster: %s: JetStream did not answer within %v: %w (is a quorum of cluster_peers up and reachable?)",
				what, time.Since(start).Round(time.Second), err)
		}
		if err.Error() != last {
			n.log.Printf("cluster %s: waiting for JetStream (%s: %v), retrying", n.cfg.Name, what, err)
			last = err.Error()
		}
		select {
		case <-ctx.Done():
		case <-n.stop:
			return errClosed
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// awaitMeta waits until the embedded server follows a JetStream meta leader
// (with an external NATS, its first answer says so).
func (n *Node) awaitMeta(ctx context.Context) error {
	if n.ns == nil {
		return nil
	}
	start := time.Now()
	logged := false
	for !n.ns.JetStreamIsCurrent() {
		if !logged && time.Since(start) > 2*time.Second {
			n.log.Printf("cluster %s: waiting for JetStream's meta leader (%d routes to peers so far)", n.cfg.Name, n.ns.NumRoutes())
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: JetStream elected no meta leader within %v (%d routes to peers): is a quorum of cluster_peers up and reachable?",
				time.Since(start).Round(time.Second), n.ns.NumRoutes())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if logged {
		n.log.Printf("cluster %s: JetStream has a meta leader after %v", n.cfg.Name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// bucket binds (making it if needed) one of the cluster's buckets. It is
// bound when it exists and made only when it does not: concurrent updates of
// a stream still being placed go unanswered on a loaded machine.
func (n *Node) bucket(ctx context.Context, what string, replicas int, maxValue int32, st jetstream.StorageType) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{Bucket: "midge-" + n.cfg.Name + "-" + what, Replicas: replicas,
		Storage: st, History: 1, MaxValueSize: maxValue}
	var kv jetstream.KeyValue
	err := n.retryJS(ctx, "bucket "+cfg.Bucket, func(actx context.Context) error {
		var err error
		kv, err = n.js.KeyValue(actx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = n.js.CreateKeyValue(actx, cfg)
		}
		return err
	})
	return kv, err
}

// stream binds (making it if needed) a stream, as bucket does.
func (n *Node) stream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var st jetstream.Stream
	err := n.retryJS(ctx, "stream "+cfg.Name, func(actx context.Context) error {
		var err error
		st, err = n.js.Stream(actx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = n.js.CreateStream(actx, cfg)
		}
		return err
	})
	return st, err
}
