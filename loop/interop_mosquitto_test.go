package loop

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// v3MosquittoTool returns the path of a Debian mosquitto client, failing
// (never skipping) when it is missing.
func v3MosquittoTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run `make deps` (installs Debian's mosquitto-clients)", name)
	}
	return path
}

// v3Run makes the command of a mosquitto client, killed when ctx ends.
func v3Run(t *testing.T, ctx context.Context, tool string, args ...string) *exec.Cmd {
	t.Helper()
	return exec.CommandContext(ctx, v3MosquittoTool(t, tool), args...)
}

// TestInteropMosquittoClients drives midge with Debian's mosquitto_sub and
// mosquitto_pub at every protocol version and QoS, live and retained.
func TestInteropMosquittoClients(t *testing.T) {
	tb := startBroker(t, nil)
	host, port, _ := net.SplitHostPort(tb.Addr)
	for _, v := range []string{"31", "311", "5"} {
		for _, qos := range []string{"0", "1", "2"} {
			for _, retain := range []bool{false, true} {
				name := fmt.Sprintf("V%s/q%s/retain=%v", v, qos, retain)
				t.Run(name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					defer cancel()
					topic := "interop/" + name
					common := []string{"-h", host, "-p", port, "-V", v, "-q", qos, "-t", topic}
					pub := func(msg string, extra ...string) {
						args := append(append([]string{}, common...), "-i", "pub-"+name, "-m", msg)
						out, err := v3Run(t, ctx, "mosquitto_pub", append(args, extra...)...).CombinedOutput()
						if err != nil {
							t.Fatalf("mosquitto_pub: %v: %s", err, out)
						}
					}
					if retain {
						// Retained first, then a subscriber that joins later gets it
						// with the retained flag (-R would drop it; -v shows topic).
						pub("kept", "-r")
						out, err := v3Run(t, ctx, "mosquitto_sub", append(common, "-i", "sub-"+name, "-C", "1",
							"-F", "%r %t %p")...).CombinedOutput()
						if err != nil {
							t.Fatalf("mosquitto_sub: %v: %s", err, out)
						}
						if got, want := strings.TrimSpace(string(out)), "1 "+topic+" kept"; got != want {
							t.Fatalf("got %q, want %q", got, want)
						}
						// An empty retained message clears it [MQTT-3.3.1-10]; at
						// QoS 0 the tool exits before the broker has read it.
						pub("", "-r")
						for end := time.Now().Add(v3Wait); tb.Broker.Stats.RetainedMessages.Load() != 0; {
							if time.Now().After(end) {
								t.Fatal("the retained message was not cleared")
							}
							time.Sleep(5 * time.Millisecond)
						}
						return
					}
					// Live: start the subscriber, wait until it is subscribed, publish.
					var stdout, stderr bytes.Buffer
					sub := v3Run(t, ctx, "mosquitto_sub", append(common, "-i", "sub-"+name, "-C", "3",
						"-F", "%r %q %p")...)
					sub.Stdout, sub.Stderr = &stdout, &stderr
					before := tb.Broker.Subscriptions()
					if err := sub.Start(); err != nil {
						t.Fatal(err)
					}
					v3WaitSubscribed(t, tb, before)
					for i := 1; i <= 3; i++ {
						pub(fmt.Sprintf("m%d", i))
					}
					if err := sub.Wait(); err != nil {
						t.Fatalf("mosquitto_sub: %v: %s", err, stderr.String())
					}
					want := fmt.Sprintf("0 %s m1\n0 %s m2\n0 %s m3\n", qos, qos, qos)
					if stdout.String() != want {
						t.Fatalf("got %q, want %q", stdout.String(), want)
					}
				})
			}
		}
	}
}

// v3WaitSubscribed waits until the broker holds more subscriptions than
// before (the subtests run one at a time, so the new one is the tool's).
func v3WaitSubscribed(t *testing.T, tb *testBroker, before int) {
	t.Helper()
	for deadline := time.Now().Add(v3Wait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if tb.Broker.Subscriptions() > before {
			return
		}
	}
	t.Fatal("mosquitto_sub never subscribed")
}
