package tools

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/store"
)

// writeStore fills a store in dir with one record of each kind and closes it.
func writeStore(t *testing.T, dir string) {
	t.Helper()
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := store.NewBatch()
	b.PutRetained(&store.Message{Topic: []byte("a/b"), Payload: []byte("hello"), QoS: 1, Retain: true})
	b.PutRetained(&store.Message{Topic: []byte("big"), Payload: bytes.Repeat([]byte("x"), 100), Retain: true})
	b.PutSession(&store.Session{ClientID: "c1", Version: 5, Expiry: 60,
		DisconnectedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano(),
		Subscriptions: []store.Subscription{
			{Filter: "a/+", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 7},
			{Filter: "$share/g/x/#", QoS: 1},
		},
		Will: &store.Message{Topic: []byte("will"), Payload: []byte("bye"), QoS: 1}, WillDelay: 30})
	b.PutSession(&store.Session{ClientID: "c2", Version: 4, Expiry: math.MaxUint32})
	b.PutQueued(&store.Queued{ClientID: "c1", Seq: 1, QoS: 1, Msg: store.Message{Topic: []byte("a/x"), Payload: []byte("m1"), QoS: 1}})
	b.PutQueued(&store.Queued{ClientID: "c1", Seq: 2, QoS: 2, PacketID: 9, PubrelSent: true, Msg: store.Message{Topic: []byte("a/y"), QoS: 2}})
	b.PutQueued(&store.Queued{ClientID: "c2", Seq: 5, QoS: 1, Retain: true, PacketID: 3, Msg: store.Message{Topic: []byte("a/z"), Payload: []byte("m3"), QoS: 1}})
	b.PutAwaitingRel("c1", 17)
	b.PutAwaitingRel("gone", 4)
	db.Submit(b)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

const dumpCounts = `Sessions: 2
Subscriptions: 2
Retained messages: 2
Queued messages: 3
Awaiting PUBREL: 2
Unreadable: 0
`

func TestDump(t *testing.T) {
	dir := t.TempDir()
	writeStore(t, dir)
	garbage := t.TempDir()
	os.WriteFile(filepath.Join(garbage, "CURRENT"), []byte("not a manifest\n"), 0o600)
	cases := []struct {
		name   string
		args   []string
		rc     int
		stdout string
		stderr string // a substring of it
	}{
		{"all", []string{dir}, 0, `Session "c1": protocol 5, expiry 60s, disconnected 2025-01-02T03:04:05Z
  subscription "a/+" qos 2 no-local retain-as-published retain-handling 2 id 7
  subscription "$share/g/x/#" qos 1
  will "will" qos 1, 3 bytes: "bye", delay 30s
  message 1 (queued): qos 1, "a/x" qos 1, 2 bytes: "m1"
  message 2 (in flight, packet id 9, PUBREL sent): qos 2, "a/y" qos 2, 0 bytes
  awaiting PUBREL: [17]
Session "c2": protocol 4, expiry never, connected when last written
  message 5 (in flight, packet id 3): qos 1 retain, "a/z" qos 1, 2 bytes: "m3"
Retained "a/b" qos 1 retain, 5 bytes: "hello"
Retained "big" qos 0 retain, 100 bytes: "` + strings.Repeat("x", 64) + `"...
No session "gone", but:
  awaiting PUBREL: [4]
` + dumpCounts, ""},
		{"counts", []string{"--counts", dir}, 0, dumpCounts, ""},
		{"no dir", nil, 1, "", "Usage: midge dump"},
		{"two dirs", []string{dir, dir}, 1, "", "Usage: midge dump"},
		{"unknown flag", []string{"-x", dir}, 1, "", "Usage: midge dump"},
		{"missing", []string{filepath.Join(dir, "nope")}, 1, "", "Error: no midge store found; looked for "},
		{"damaged", []string{garbage}, 1, "", "Error: store: open "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			rc := Dump(c.args, nil, &out, &errb)
			if rc != c.rc || out.String() != c.stdout || !strings.Contains(errb.String(), c.stderr) {
				t.Fatalf("rc %d, stdout:\n%s\nstderr: %s\nwant rc %d, stdout:\n%s\nstderr containing %q",
					rc, out.String(), errb.String(), c.rc, c.stdout, c.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("dump created the missing directory")
	}
}

// TestDumpFindsStore: `midge dump` takes persistence_location, the store
// directory (FILE.d, or an older midge's FILE), or persistence_file
// (mosquitto.db standing for midge.db), and
// says what it looked for when none is there.
func TestDumpFindsStore(t *testing.T) {
	loc := t.TempDir()
	writeStore(t, filepath.Join(loc, "midge.db"))
	other := t.TempDir()
	writeStore(t, filepath.Join(other, "custom.db"))
	empty := t.TempDir()
	newer := t.TempDir() // persistence_file midge.db stands for the store midge.db.d
	writeStore(t, filepath.Join(newer, "midge.db.d"))
	for _, c := range []struct {
		arg  string
		rc   int
		want string // in stdout, or stderr when rc != 0
	}{
		{loc, 0, "Sessions: 2"},
		{filepath.Join(loc, "midge.db"), 0, "Sessions: 2"},
		{filepath.Join(loc, "mosquitto.db"), 0, "Sessions: 2"},
		{other, 0, "Sessions: 2"},
		{newer, 0, "Sessions: 2"},
		{filepath.Join(newer, "midge.db"), 0, "Sessions: 2"},
		{empty, 1, "no midge store found; looked for " + empty + ".d, " + empty + ", " + filepath.Join(empty, "midge.db.d")},
		{filepath.Join(empty, "none"), 1, "no midge store found; looked for " + filepath.Join(empty, "none.d")},
	} {
		var out, errb bytes.Buffer
		rc := Dump([]string{"--counts", c.arg}, nil, &out, &errb)
		got := out.String()
		if rc != 0 {
			got = errb.String()
		}
		if rc != c.rc || !strings.Contains(got, c.want) {
			t.Errorf("dump %s: rc %d, %q; want rc %d with %q", c.arg, rc, got, c.rc, c.want)
		}
	}
}
