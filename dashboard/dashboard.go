// Package dashboard serves the broker's live page at / on the metrics
// listener: one HTML file embedded in the binary, fed by two small JSON
// endpoints. /api/stats is read from the same Prometheus registry as
// /metrics (one source of truth); /api/clients pages and searches a
// snapshot of the connected clients that the event loops take of
// themselves. Everything is read-only, and nothing runs while nobody
// watches.
package dashboard

import (
	"context"
	_ "embed"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/midge-mqtt/midge/session"
)

//go:embed static/index.html
var page []byte

// Source is what the dashboard reads of the broker.
type Source interface {
	// Clients is a snapshot of every connected client.
	Clients(ctx context.Context) ([]session.ClientStatus, error)
	// SubscriptionsOf is one client's filters, and whether it has a session.
	SubscriptionsOf(clientID string) ([]string, bool)
}

// snapshotAge is how long one snapshot of the clients serves every
// request: paging through 100,000 clients costs one walk of the loops a
// second, not one per page.
const snapshotAge = time.Second

// maxPage bounds a page of clients, so that no request sends them all.
const maxPage = 500

// Dashboard serves the page and its endpoints.
type Dashboard struct {
	reg *prometheus.Registry
	src Source

	mu    sync.Mutex
	taken time.Time
	snap  []session.ClientStatus // sorted by client id
}

// New makes a dashboard of src, whose statistics are gathered from reg.
func New(reg *prometheus.Registry, src Source) *Dashboard {
	return &Dashboard{reg: reg, src: src}
}

// Register adds /, /api/stats, /api/clients and /api/subscriptions to mux.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", d.serveIndex)
	mux.HandleFunc("GET /api/stats", d.serveStats)
	mux.HandleFunc("GET /api/clients", d.serveClients)
	mux.HandleFunc("GET /api/subscriptions", d.serveSubscriptions)
}

func (d *Dashboard) serveIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	_, _ = w.Write(page)
}

// Stats is /api/stats: every midge_ metric and a few of the process's,
// keyed as the text exposition names them (labels inside braces).
type Stats struct {
	Time    int64              `json:"time"` // unix milliseconds
	Metrics map[string]float64 `json:"metrics"`
}

// wanted are the families beside midge_* that the page shows.
var wanted = map[string]bool{
	"process_resident_memory_bytes": true,
	"process_cpu_seconds_total":     true,
	"go_goroutines":                 true,
}

// Gather reads the registry into Stats.
func (d *Dashboard) Gather() (Stats, error) {
	fams, err := d.reg.Gather()
	st := Stats{Time: time.Now().UnixMilli(), Metrics: make(map[string]float64)}
	if err != nil {
		return st, err
	}
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "midge_") && !wanted[name] {
			continue
		}
		for _, m := range f.GetMetric() {
			st.Metrics[key(name, m.GetLabel())] = value(m)
		}
	}
	return st, nil
}

func key(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, l := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName())
		b.WriteString(`="`)
		b.WriteString(l.GetValue())
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func (d *Dashboard) serveStats(w http.ResponseWriter, _ *http.Request) {
	st, err := d.Gather()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, st)
}

// ClientPage is /api/clients.
type ClientPage struct {
	Total      int                    `json:"total"`   // connected clients
	Matched    int                    `json:"matched"` // of those, matching the query
	Offset     int                    `json:"offset"`
	ByProtocol map[string]int         `json:"by_protocol"` // connected clients by protocol level
	Clients    []session.ClientStatus `json:"clients"`
	Taken      int64                  `json:"taken"` // unix milliseconds of the snapshot
	// Over every connected client, matched or not: messages queued,
	// messages in flight, publishers held back by a full queue.
	Queued   int64 `json:"queued"`
	Inflight int64 `json:"inflight"`
	HeldBack int   `json:"held_back"`
}

// snapshot returns the clients, taken at most snapshotAge ago.
func (d *Dashboard) snapshot(ctx context.Context) ([]session.ClientStatus, time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snap != nil && time.Since(d.taken) < snapshotAge {
		return d.snap, d.taken, nil
	}
	cs, err := d.src.Clients(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	if cs == nil {
		cs = []session.ClientStatus{}
	}
	d.snap, d.taken = cs, time.Now()
	return cs, d.taken, nil
}

// Page filters the snapshot by q (a substring of the id, username or
// address) and returns limit clients from offset.
func (d *Dashboard) Page(ctx context.Context, q string, offset, limit int) (ClientPage, error) {
	cs, taken, err := d.snapshot(ctx)
	if err != nil {
		return ClientPage{}, err
	}
	p := ClientPage{Total: len(cs), Offset: offset, ByProtocol: map[string]int{}, Clients: []session.ClientStatus{}, Taken: taken.UnixMilli()}
	for i := range cs {
		c := &cs[i]
		p.ByProtocol[strconv.Itoa(int(c.Version))]++
		p.Queued += int64(c.Queued)
		p.Inflight += int64(c.Inflight)
		if c.HeldBack {
			p.HeldBack++
		}
		if q != "" && !strings.Contains(c.ID, q) && !strings.Contains(c.Username, q) && !strings.Contains(c.Address, q) {
			continue
		}
		if p.Matched >= offset && len(p.Clients) < limit {
			p.Clients = append(p.Clients, *c)
		}
		p.Matched++
	}
	return p, nil
}

func (d *Dashboard) serveClients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if offset < 0 {
		offset = 0
	}
	if err != nil || limit < 0 {
		limit = 100 // limit=0 asks for the totals alone
	}
	limit = min(limit, maxPage)
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	p, err := d.Page(ctx, q.Get("q"), offset, limit)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, p)
}

func (d *Dashboard) serveSubscriptions(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	fs, ok := d.src.SubscriptionsOf(id)
	if !ok {
		http.Error(w, "no session for this client id", http.StatusNotFound)
		return
	}
	sort.Strings(fs)
	if fs == nil {
		fs = []string{}
	}
	writeJSON(w, struct {
		ID      string   `json:"id"`
		Filters []string `json:"filters"`
	}{id, fs})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
