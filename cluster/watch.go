package cluster

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A node follows the routes and retained buckets with nats.go's key watcher
// (an ordered push consumer). That consumer is not forever: after a
// JetStream leader change or a reconnect nats.go makes it again, and when
// that fails with an error it does not retry (no responders, a stream
// without a leader yet...), it ends the subscription: the watcher's channel
// closes and the node's view of the bucket stays as it was, for good. A
// watcher can also fall silent without closing. So a node follows a bucket
// with a loop that makes the watch again whenever it closes, or when the
// bucket's last revision, read every watchCheck, has not been delivered by
// the next check; a new watch delivers the whole bucket again (a resync).

// watchCheck is how often a node compares what its watch delivered with
// the bucket's last revision.
const watchCheck = 2 * time.Second

// follower is what a node does with one bucket's entries.
type follower struct {
	what  string
	begin func(again bool)                // a watch starts: the whole bucket follows
	apply func(e jetstream.KeyValueEntry) // one entry
	ready func(again bool)                // the bucket's entries up to the watch's start are applied
}

// follow watches kv until the node stops and returns once the first watch
// has delivered the whole bucket (or ctx ended first).
func (n *Node) follow(ctx context.Context, kv jetstream.KeyValue, f follower) error {
	w, cancel, err := n.watchOnce(ctx, kv)
	if err != nil {
		return err
	}
	loaded := make(chan struct{})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		again := false
		for {
			n.watching.Store(kv.Bucket(), w)
			f.begin(again)
			why := n.followWatch(kv, w, f, again, loaded)
			_ = w.Stop()
			cancel()
			if why == "" {
				return // the node stops
			}
			n.Stats.WatchRestarts.Add(1)
			n.log.Printf("cluster %s: the watch of bucket %s %s: watching it again and reloading it", n.cfg.Name, kv.Bucket(), why)
			again = true
			for {
				// Bounded by the node's life only: a node cut off keeps trying.
				w, cancel, err = n.watchOnce(context.Background(), kv)
				if err == nil {
					break
				}
				select {
				case <-n.stop:
					return
				case <-time.After(time.Second):
				}
			}
		}
	}()
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		return errClosed
	}
}

// followWatch applies w's entries until it closes or stalls (it says why) or
// the node stops ("").
func (n *Node) followWatch(kv jetstream.KeyValue, w jetstream.KeyWatcher, f follower, again bool, loaded chan struct{}) string {
	var last uint64 // the last revision delivered
	initial := true
	tick := time.NewTicker(watchCheck)
	defer tick.Stop()
	var want uint64 // the bucket's last revision at the previous check
	checked := make(chan uint64, 1)
	checking := false
	for {
		select {
		case <-n.stop:
			return ""
		case e, ok := <-w.Updates():
			if !ok {
				return "ended"
			}
			if e == nil {
				if initial {
					initial = false
					f.ready(again)
					if !again {
						close(loaded)
					}
				}
				continue
			}
			last = max(last, e.Revision())
			f.apply(e)
		case <-tick.C:
			if want > last {
				return "stalled (bucket at revision " + itoa(want) + ", delivered up to " + itoa(last) + ")"
			}
			if !checking {
				checking = true
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), watchCheck)
					defer cancel()
					var rev uint64
					if st, err := kv.Status(ctx); err == nil {
						if s, ok := st.(*jetstream.KeyValueBucketStatus); ok {
							rev = s.StreamInfo().State.LastSeq
						}
					}
					checked <- rev // 0: unknown (no answer): no verdict
				}()
			}
		case rev := <-checked:
			checking = false
			want = rev
		}
	}
}

// watchOnce starts a watch of the whole bucket, retrying within ctx. The
// watch lives until cancel: nats.go ends a watcher with its context, so
// each try is bounded by a timer instead.
func (n *Node) watchOnce(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, context.CancelFunc, error) {
	var w jetstream.KeyWatcher
	var wcancel context.CancelFunc
	err := n.retryJS(ctx, "watching bucket "+kv.Bucket(), func(actx context.Context) error {
		wctx, cancel := context.WithCancel(context.Background())
		d, _ := actx.Deadline()
		t := time.AfterFunc(time.Until(d), cancel)
		ww, err := kv.WatchAll(wctx)
		if !t.Stop() { // too late: its context is gone
			if ww != nil {
				_ = ww.Stop()
			}
			cancel()
			return context.DeadlineExceeded
		}
		if err != nil {
			cancel()
			return err
		}
		w, wcancel = ww, cancel
		return nil
	})
	return w, wcancel, err
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
