// Command crash is the kill -9 harness of midge's persistence: a persistent
// publisher sends numbered QoS 1 and QoS 2 messages to a persistent
// subscriber (online in two rounds out of three, else offline) through a
// broker with `persistence_sync always`, which is killed with SIGKILL once
// per round at a random point of the flows (the n-th PUBLISH, PUBREC,
// PUBREL, PUBCOMP or PUBACK either client sends or receives, plus up to
// 2 ms, or a random time) and started again on the same store. At the end
// it counts, per QoS, messages the publisher had acknowledged that never
// arrived (lost) and messages that arrived more than once (duplicates).
// QoS 2 must show neither; QoS 1 must lose nothing (its duplicates are
// allowed, and reported).
//
//	go run ./test/crash -rounds 300       # or: make crash
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"
)

func main() {
	rounds := flag.Int("rounds", 300, "kill -9 rounds")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (printed, to replay a run's choices)")
	v5 := flag.Bool("v5", false, "MQTT 5 clients (session expiry) instead of 3.1.1 (clean session 0)")
	bin := flag.String("broker", "", "midge binary (default: build it)")
	keep := flag.Bool("keep", false, "keep the store and the broker's log")
	quiet := flag.Bool("q", false, "no line per round")
	flag.Parse()

	dir, err := os.MkdirTemp("", "midge-crash")
	if err != nil {
		fail(err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	if *bin == "" {
		*bin = filepath.Join(dir, "midge")
		if out, err := exec.Command("go", "build", "-o", *bin, "github.com/midge-mqtt/midge").CombinedOutput(); err != nil {
			fail(fmt.Errorf("build: %v\n%s", err, out))
		}
	}
	cfg := config{bin: *bin, dir: dir, rounds: *rounds, seed: *seed, v5: *v5, log: os.Stdout}
	if *quiet {
		cfg.log = nil
	}
	fmt.Printf("crash: %d rounds, seed %d, v5=%v, store in %s\n", *rounds, *seed, *v5, dir)
	began := time.Now()
	rep, err := run(cfg)
	if rep != nil {
		fmt.Print(rep)
		kinds := make([]string, 0, len(rep.kills))
		for k := range rep.kills {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			fmt.Printf("  killed at %s: %d\n", k, rep.kills[k])
		}
	}
	fmt.Printf("took %v\n", time.Since(began).Round(time.Second))
	if err != nil {
		os.RemoveAll(dir)
		fail(err)
	}
	if !rep.ok() {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "crash:", err)
	os.Exit(2)
}
