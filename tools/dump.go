package tools

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/midge-mqtt/midge/store"
)

const dumpUsage = `midge dump prints what a midge persistence store holds.

Usage: midge dump [--counts] DIR
 DIR      : persistence_location (the store, midge.db.d, is looked for
            inside it), the store directory itself, or persistence_file.
 --counts : print only the number of records of each kind.

Exit status: 0, 1 if the store cannot be opened, 2 if some records could not
be read (they are listed; the rest is printed).
`

// dumpPayloadMax is how much of a payload dump shows.
const dumpPayloadMax = 64

// Dump is `midge dump`, midge's db_dump: it opens the store read-only and
// prints its sessions with their subscriptions and will, retained messages,
// queued messages and QoS 2 ids awaiting PUBREL, with counts, then what could
// not be read.
func Dump(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var dir string
	countsOnly := false
	for _, a := range args {
		switch {
		case a == "--counts" || a == "-c":
			countsOnly = true
		case a == "--help" || a == "-h":
			fmt.Fprint(stdout, dumpUsage)
			return 0
		case strings.HasPrefix(a, "-") || dir != "":
			fmt.Fprint(stderr, dumpUsage)
			return 1
		default:
			dir = a
		}
	}
	if dir == "" {
		fmt.Fprint(stderr, dumpUsage)
		return 1
	}
	dir, err := findStore(dir)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	db, err := store.Open(dir, store.Options{ReadOnly: true})
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	defer db.Close()
	var (
		retained []*store.Message
		sessions []*store.Session
		queued   = map[string][]*store.Queued{}
		awaiting = map[string][]uint16{}
		nQueued  int
		nAwait   int
		counters []string
	)
	rep, err := db.Load(store.Visitor{
		Retained: func(m *store.Message) { retained = append(retained, m) },
		Session:  func(s *store.Session) { sessions = append(sessions, s) },
		Queued: func(q *store.Queued) {
			queued[q.ClientID] = append(queued[q.ClientID], q)
			nQueued++
		},
		AwaitingRel: func(id string, p uint16) {
			awaiting[id] = append(awaiting[id], p)
			nAwait++
		},
		Counter: func(name string, v uint64) { counters = append(counters, fmt.Sprintf("%s %d", name, v)) },
	})
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	w := &dumpWriter{w: stdout}
	if !countsOnly {
		w.sessions(sessions, queued, awaiting)
		w.retained(retained)
		w.orphans(sessions, queued, awaiting)
		if len(counters) > 0 {
			w.printf("Counters (totals since the store was created):\n")
			for _, c := range counters {
				w.printf("  %s\n", c)
			}
		}
	}
	w.printf("Sessions: %d\n", len(sessions))
	subs := 0
	for _, s := range sessions {
		subs += len(s.Subscriptions)
	}
	w.printf("Subscriptions: %d\n", subs)
	w.printf("Retained messages: %d\n", len(retained))
	w.printf("Queued messages: %d\n", nQueued)
	w.printf("Awaiting PUBREL: %d\n", nAwait)
	w.printf("Unreadable: %d\n", len(rep.Unreadable))
	for _, line := range rep.Unreadable {
		w.printf("  %s\n", line)
	}
	if w.err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", w.err)
		return 1
	}
	if len(rep.Unreadable) > 0 {
		return 2
	}
	return 0
}

type dumpWriter struct {
	w   io.Writer
	err error
}

func (d *dumpWriter) printf(format string, a ...any) {
	if d.err == nil {
		_, d.err = fmt.Fprintf(d.w, format, a...)
	}
}

func (d *dumpWriter) sessions(sessions []*store.Session, queued map[string][]*store.Queued, awaiting map[string][]uint16) {
	for _, s := range sessions {
		d.printf("Session %q: protocol %d, expiry %s, %s\n", s.ClientID, s.Version, dumpExpiry(s.Expiry), dumpDisconnected(s.DisconnectedAt))
		for _, sub := range s.Subscriptions {
			d.printf("  subscription %q qos %d%s\n", sub.Filter, sub.QoS, dumpSubOptions(sub))
		}
		if s.Will != nil {
			d.printf("  will %s, delay %ds\n", dumpMessage(s.Will), s.WillDelay)
		}
		d.queued(queued[s.ClientID], awaiting[s.ClientID])
	}
}

func (d *dumpWriter) queued(qs []*store.Queued, ids []uint16) {
	for _, q := range qs {
		state := "queued"
		switch {
		case q.PubrelSent:
			state = fmt.Sprintf("in flight, packet id %d, PUBREL sent", q.PacketID)
		case q.PacketID != 0:
			state = fmt.Sprintf("in flight, packet id %d", q.PacketID)
		}
		retain := ""
		if q.Retain {
			retain = " retain"
		}
		d.printf("  message %d (%s): qos %d%s, %s\n", q.Seq, state, q.QoS, retain, dumpMessage(&q.Msg))
	}
	if len(ids) > 0 {
		d.printf("  awaiting PUBREL: %v\n", ids)
	}
}

func (d *dumpWriter) retained(ms []*store.Message) {
	for _, m := range ms {
		d.printf("Retained %s\n", dumpMessage(m))
	}
}

// orphans prints queued messages and ids whose session record is missing,
// which a damaged store may hold.
func (d *dumpWriter) orphans(sessions []*store.Session, queued map[string][]*store.Queued, awaiting map[string][]uint16) {
	known := map[string]bool{}
	for _, s := range sessions {
		known[s.ClientID] = true
	}
	var ids []string
	for id := range queued {
		if !known[id] {
			ids = append(ids, id)
		}
	}
	for id := range awaiting {
		if !known[id] && queued[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		d.printf("No session %q, but:\n", id)
		d.queued(queued[id], awaiting[id])
	}
}

func dumpMessage(m *store.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q qos %d", m.Topic, m.QoS)
	if m.Retain {
		b.WriteString(" retain")
	}
	if m.ExpiresAt != 0 {
		fmt.Fprintf(&b, " expires %s", time.Unix(0, m.ExpiresAt).UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, ", %d bytes", len(m.Payload))
	if len(m.Payload) > 0 {
		p := m.Payload[:min(len(m.Payload), dumpPayloadMax)]
		fmt.Fprintf(&b, ": %q", p)
		if len(p) < len(m.Payload) {
			b.WriteString("...")
		}
	}
	return b.String()
}

func dumpSubOptions(s store.Subscription) string {
	var b strings.Builder
	if s.NoLocal {
		b.WriteString(" no-local")
	}
	if s.RetainAsPublished {
		b.WriteString(" retain-as-published")
	}
	if s.RetainHandling != 0 {
		fmt.Fprintf(&b, " retain-handling %d", s.RetainHandling)
	}
	if s.ID != 0 {
		fmt.Fprintf(&b, " id %d", s.ID)
	}
	return b.String()
}

func dumpExpiry(e uint32) string {
	if e == math.MaxUint32 {
		return "never"
	}
	return fmt.Sprintf("%ds", e)
}

func dumpDisconnected(at int64) string {
	if at == 0 {
		return "connected when last written"
	}
	return "disconnected " + time.Unix(0, at).UTC().Format(time.RFC3339)
}

// findStore finds the store that arg names: the store directory itself,
// persistence_location (holding midge.db, or one store under another
// persistence_file name), or persistence_file (mosquitto's default name,
// mosquitto.db, stands for midge.db beside it).
func findStore(arg string) (string, error) {
	var tried []string
	// try reports the store of a persistence_file path: the directory beside
	// it (FILE.d), or the path itself (an older midge's store directory).
	try := func(file string) (string, bool) {
		for _, p := range []string{file + ".d", file} {
			tried = append(tried, p)
			if isStore(p) {
				return p, true
			}
		}
		return "", false
	}
	if p, ok := try(arg); ok {
		return p, nil
	}
	if filepath.Base(arg) == "mosquitto.db" {
		if p, ok := try(filepath.Join(filepath.Dir(arg), "midge.db")); ok {
			return p, nil
		}
	}
	if fi, err := os.Stat(arg); err == nil && fi.IsDir() {
		if p, ok := try(filepath.Join(arg, "midge.db")); ok {
			return p, nil
		}
		entries, _ := os.ReadDir(arg)
		var found []string
		for _, e := range entries {
			if p := filepath.Join(arg, e.Name()); e.IsDir() && isStore(p) {
				found = append(found, p)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
			tried = append(tried, filepath.Join(arg, "*")+" (a store under another persistence_file name)")
		default:
			return "", fmt.Errorf("%s holds several stores (%s): name one", arg, strings.Join(found, ", "))
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	return "", fmt.Errorf("no midge store found; looked for %s", strings.Join(tried, ", "))
}

// isStore reports whether dir holds a store (the database's CURRENT file).
func isStore(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "CURRENT"))
	return err == nil && fi.Mode().IsRegular()
}
