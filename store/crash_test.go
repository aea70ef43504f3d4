package store

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test's workload: batch n (numbered from 1 across restarts) puts
// queued message n of client "sub", deletes queued message n-window (acked),
// and sets retained topic r/(n%topics) to payload n.
const (
	crashEnv    = "MIDGE_STORE_CRASH_DIR"
	crashWindow = 100
	crashTopics = 16
)

func crashBatch(b *Batch, n uint64) {
	payload := binary.BigEndian.AppendUint64(make([]byte, 0, 64), n)
	payload = append(payload, make([]byte, 56)...)
	b.PutQueued(&Queued{ClientID: "sub", Seq: n, QoS: 1, Msg: Message{Topic: []byte("t"), Payload: payload, QoS: 1}})
	if n > crashWindow {
		b.DeleteQueued("sub", n-crashWindow)
	}
	b.PutRetained(&Message{Topic: fmt.Appendf(nil, "r/%d", n%crashTopics), Payload: payload[:8], Retain: true})
}

// crashState checks that the store holds exactly the effects of batches
// 1..last for some last, and returns last.
func crashState(t *testing.T, dir string) uint64 {
	t.Helper()
	db := open(t, dir, Options{})
	defer db.Close()
	got, rep := load(t, db)
	if len(rep.Unreadable) != 0 {
		t.Fatalf("report after crash: %q", rep.Unreadable)
	}
	if len(got.Queued) == 0 {
		if len(got.Retained) != 0 {
			t.Fatalf("retained without queued: %d", len(got.Retained))
		}
		return 0
	}
	last := got.Queued[len(got.Queued)-1].Seq
	first := uint64(1)
	if last > crashWindow {
		first = last - crashWindow + 1
	}
	if uint64(len(got.Queued)) != last-first+1 || got.Queued[0].Seq != first {
		t.Fatalf("queued %d..%d (%d records), want exactly %d..%d", got.Queued[0].Seq, last, len(got.Queued), first, last)
	}
	for _, q := range got.Queued {
		if binary.BigEndian.Uint64(q.Msg.Payload) != q.Seq {
			t.Fatalf("queued %d holds payload %d", q.Seq, binary.BigEndian.Uint64(q.Msg.Payload))
		}
	}
	for _, m := range got.Retained {
		r, _ := strconv.Atoi(strings.TrimPrefix(string(m.Topic), "r/"))
		want := last - (last+crashTopics-uint64(r))%crashTopics // the latest n <= last with n%topics == r
		if v := binary.BigEndian.Uint64(m.Payload); v != want {
			t.Fatalf("retained %s = %d, want %d (last batch %d): a batch was applied in part", m.Topic, v, want, last)
		}
	}
	return last
}

// TestCrashChild is the process that TestCrash kills: it continues the
// workload from what the store holds, printing each durable batch number.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	base := crashState(t, dir)
	out := make(chan uint64, 1024)
	db := open(t, dir, Options{OnDurable: func(seq uint64) {
		select {
		case out <- base + seq:
		default: // the printer is behind; a later number says more
		}
	}})
	go func() {
		for n := range out {
			fmt.Fprintf(os.Stdout, "durable %d\n", n) // unbuffered: the parent sees it before a kill
		}
	}()
	go func() { // one publisher: batch n gets seq n-base
		b := NewBatch()
		for n := base + 1; ; n++ {
			crashBatch(b, n)
			if seq := db.Submit(b); base+seq != n {
				panic(fmt.Sprintf("seq %d for batch %d", seq, n))
			}
			b.Reset()
			if n%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	fmt.Fprintf(os.Stdout, "started %d\n", base)
	time.Sleep(time.Minute) // killed long before
	t.Fatal("not killed")
}

// TestCrash kills a process writing to the store with SIGKILL at random
// moments; after each kill, every batch it reported durable loads back, and
// no batch is applied in part.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	const rounds = 8
	var total uint64
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var started bool
		var reported uint64
		kill := time.After(time.Hour)
		timeout := time.After(30 * time.Second)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if v, found := strings.CutPrefix(l, "durable "); found {
					n, _ := strconv.ParseUint(v, 10, 64)
					reported = max(reported, n)
				} else if strings.HasPrefix(l, "started ") && !started {
					started = true
					kill = time.After(time.Duration(5+rng.IntN(150)) * time.Millisecond)
				}
			case <-kill:
				cmd.Process.Signal(syscall.SIGKILL)
				kill = time.After(time.Hour)
			case <-timeout:
				cmd.Process.Kill()
				t.Fatalf("round %d: child did not start or end", round)
			}
		}
		cmd.Wait()
		if !started {
			t.Fatalf("round %d: child failed before starting", round)
		}
		last := crashState(t, dir)
		t.Logf("round %d: reported durable %d, store holds 1..%d", round, reported, last)
		if last < reported {
			t.Fatalf("round %d: batch %d was reported durable, store holds only up to %d", round, reported, last)
		}
		total = last
	}
	if total == 0 {
		t.Fatal("no batch became durable in any round")
	}
}
