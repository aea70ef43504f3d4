// Package dynsec is mosquitto's dynamic security plugin served natively:
// the same JSON file (as mosquitto 2.0 and `mosquitto_ctrl dynsec init`
// write it), the same evaluation of clients, groups, roles and ACLs, and the
// same administration over $CONTROL/dynamic-security/v1, so that
// mosquitto_ctrl administers midge.
package dynsec

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/pbkdf2"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// ACL types, as in the file and the commands.
const (
	PublishClientSend    = "publishClientSend"
	PublishClientReceive = "publishClientReceive"
	SubscribeLiteral     = "subscribeLiteral"
	SubscribePattern     = "subscribePattern"
	UnsubscribeLiteral   = "unsubscribeLiteral"
	UnsubscribePattern   = "unsubscribePattern"
)

// aclTypes in the order mosquitto lists a role's ACLs.
var aclTypes = []string{PublishClientSend, PublishClientReceive, SubscribeLiteral, SubscribePattern,
	UnsubscribeLiteral, UnsubscribePattern}

const (
	defaultIterations = 101 // mosquitto 2.0's PW_DEFAULT_ITERATIONS
	saltLen           = 12
	hashLen           = 64
)

// Defaults is defaultACLAccess: what a client gets when no ACL matches. A
// file without it (or without a key) means false, as in mosquitto.
type Defaults struct {
	PublishClientSend    bool `json:"publishClientSend"`
	PublishClientReceive bool `json:"publishClientReceive"`
	Subscribe            bool `json:"subscribe"`
	Unsubscribe          bool `json:"unsubscribe"`
}

// RoleRef is a role held by a client or group, with its priority (-1: none given).
type RoleRef struct {
	Name     string
	Priority int
}

// Client is a dynsec client (a username).
type Client struct {
	Username        string
	ClientID        string // "" : any client id
	TextName        string
	TextDescription string
	Disabled        bool
	Roles           []RoleRef
	pw              password
}

type password struct {
	valid      bool
	iterations int
	salt, hash []byte
	encoded    *auth.Passwords // 2.1's encoded_password, when that is what the file has
	text       string          // that encoded_password, written back as read
}

// Group holds clients (with priorities) and roles.
type Group struct {
	Name            string
	TextName        string
	TextDescription string
	Roles           []RoleRef
	Clients         []RoleRef // Name is the username
}

// ACL is one rule of a role.
type ACL struct {
	Type     string
	Topic    string
	Priority int
	Allow    bool
}

// Role is a named set of ACLs.
type Role struct {
	Name            string
	TextName        string
	TextDescription string
	ACLs            []ACL
}

// state is the whole configuration. It is changed only by the control
// handler, under Dynsec.mu; checks read the compiled snapshot.
type state struct {
	defaults  Defaults
	clients   map[string]*Client
	groups    map[string]*Group
	roles     map[string]*Role
	anonymous string // anonymousGroup ("": none)
}

// Dynsec is the provider. Checks read an immutable snapshot (no lock);
// administration changes the state under mu, makes a new snapshot, saves
// the file in the background and kicks the clients it affects.
type Dynsec struct {
	path string
	log  *log.Logger

	mu     sync.Mutex
	st     *state
	closed bool // Close was called: nothing more is saved
	// Responses wait for the save of what they report, as mosquitto answers
	// only once its file is written (a client that stops the broker when it
	// has the answer finds the change on disk). Guarded by mu.
	unsaved bool     // a change no save has taken yet
	holding bool     // the saver holds responses it has not published yet
	pending [][]byte // responses to publish after the next save, in order

	snap atomic.Pointer[snapshot]

	// Kick disconnects the clients logged in as username (anonymous: those
	// without one); Publish sends a response. Set before serving.
	Kick    func(username string, anonymous bool)
	Publish func(topic string, payload []byte)

	saveWant  chan struct{} // capacity 1: a save is due
	saveErr   atomic.Pointer[error]
	saved     chan struct{} // signalled after each save (tests)
	saverDone chan struct{} // closed when the saver has stopped
	closeOnce sync.Once
}

// Open loads the JSON file at path (plugin_opt_config_file). An empty file
// is an empty configuration, as in mosquitto.
func Open(path string, logger *log.Logger) (*Dynsec, error) {
	if logger == nil {
		logger = log.New(os.Stderr, "", log.LstdFlags)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dynsec: %w", err)
	}
	st, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("dynsec: %s: %w", path, err)
	}
	d := &Dynsec{path: path, log: logger, st: st, saveWant: make(chan struct{}, 1), saved: make(chan struct{}, 16),
		saverDone: make(chan struct{})}
	d.snap.Store(compile(st))
	go d.saver()
	return d, nil
}

// fileJSON is the file's layout. encoding/json matches keys without regard
// to case, as cJSON_GetObjectItem does (mosquitto_ctrl writes "textName").
type fileJSON struct {
	DefaultACLAccess *Defaults  `json:"defaultACLAccess,omitempty"`
	Clients          []clientJS `json:"clients"`
	Groups           []groupJS  `json:"groups"`
	Roles            []roleJS   `json:"roles"`
	AnonymousGroup   string     `json:"anonymousGroup,omitempty"`
}

type refJS struct {
	Rolename  string `json:"rolename,omitempty"`
	Groupname string `json:"groupname,omitempty"`
	Username  string `json:"username,omitempty"`
	Priority  *int   `json:"priority,omitempty"`
}

type clientJS struct {
	Username        string  `json:"username"`
	ClientID        string  `json:"clientid,omitempty"`
	TextName        string  `json:"textname,omitempty"`
	TextDescription string  `json:"textdescription,omitempty"`
	Disabled        bool    `json:"disabled,omitempty"`
	Roles           []refJS `json:"roles"`
	Password        string  `json:"password,omitempty"`
	Salt            string  `json:"salt,omitempty"`
	Iterations      int     `json:"iterations,omitempty"`
	EncodedPassword string  `json:"encoded_password,omitempty"`
}

type groupJS struct {
	Groupname       string  `json:"groupname"`
	TextName        string  `json:"textname,omitempty"`
	TextDescription string  `json:"textdescription,omitempty"`
	Roles           []refJS `json:"roles"`
	Clients         []refJS `json:"clients"`
}

type aclJS struct {
	ACLType  string `json:"acltype"`
	Topic    string `json:"topic"`
	Priority int    `json:"priority"`
	Allow    bool   `json:"allow"`
}

type roleJS struct {
	Rolename        string  `json:"rolename"`
	TextName        string  `json:"textname,omitempty"`
	TextDescription string  `json:"textdescription,omitempty"`
	ACLs            []aclJS `json:"acls"`
}

func prio(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// parse reads the file as mosquitto's plugin does: entries it cannot use
// (no name, a role that does not exist) are skipped.
func parse(b []byte) (*state, error) {
	st := &state{clients: map[string]*Client{}, groups: map[string]*Group{}, roles: map[string]*Role{}}
	if len(strings.TrimSpace(string(b))) == 0 {
		return st, nil
	}
	var f fileJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if f.DefaultACLAccess != nil {
		st.defaults = *f.DefaultACLAccess
	}
	for _, r := range f.Roles {
		if r.Rolename == "" {
			continue
		}
		role := &Role{Name: r.Rolename, TextName: r.TextName, TextDescription: r.TextDescription}
		for _, a := range r.ACLs {
			if typ, ok := aclType(a.ACLType); ok && a.Topic != "" {
				role.ACLs = append(role.ACLs, ACL{Type: typ, Topic: a.Topic, Priority: a.Priority, Allow: a.Allow})
			}
		}
		st.roles[role.Name] = role
	}
	for _, c := range f.Clients {
		if c.Username == "" {
			continue
		}
		cl := &Client{Username: c.Username, ClientID: c.ClientID, TextName: c.TextName,
			TextDescription: c.TextDescription, Disabled: c.Disabled, Roles: st.roleRefs(c.Roles)}
		switch {
		case c.Salt != "" && c.Password != "" && c.Iterations > 0:
			salt, err1 := base64.StdEncoding.DecodeString(c.Salt)
			hash, err2 := base64.StdEncoding.DecodeString(c.Password)
			if err1 != nil || err2 != nil || len(salt) != saltLen || len(hash) != hashLen {
				return nil, fmt.Errorf("client %q: password or salt is not valid", c.Username)
			}
			cl.pw = password{valid: true, iterations: c.Iterations, salt: salt, hash: hash}
		case c.EncodedPassword != "":
			p, err := auth.ParsePasswords("encoded_password", strings.NewReader("u:"+c.EncodedPassword+"\n"))
			if err != nil {
				return nil, fmt.Errorf("client %q: %v", c.Username, err)
			}
			cl.pw = password{valid: true, encoded: p, text: c.EncodedPassword}
		}
		st.clients[cl.Username] = cl
	}
	for _, g := range f.Groups {
		if g.Groupname == "" {
			continue
		}
		gr := &Group{Name: g.Groupname, TextName: g.TextName, TextDescription: g.TextDescription, Roles: st.roleRefs(g.Roles)}
		for _, c := range g.Clients {
			if st.clients[c.Username] != nil {
				gr.Clients = append(gr.Clients, RoleRef{Name: c.Username, Priority: prio(c.Priority, -1)})
			}
		}
		st.groups[gr.Name] = gr
	}
	if st.groups[f.AnonymousGroup] != nil {
		st.anonymous = f.AnonymousGroup
	}
	return st, nil
}

func (st *state) roleRefs(refs []refJS) []RoleRef {
	var out []RoleRef
	for _, r := range refs {
		if st.roles[r.Rolename] != nil {
			out = append(out, RoleRef{Name: r.Rolename, Priority: prio(r.Priority, -1)})
		}
	}
	return out
}

// aclType accepts an ACL type without regard to case, as mosquitto does,
// and returns its canonical spelling.
func aclType(s string) (string, bool) {
	for _, t := range aclTypes {
		if strings.EqualFold(s, t) {
			return t, true
		}
	}
	return "", false
}

// marshal writes the state in mosquitto's layout.
func (st *state) marshal() ([]byte, error) {
	d := st.defaults
	f := fileJSON{DefaultACLAccess: &d, AnonymousGroup: st.anonymous,
		Clients: []clientJS{}, Groups: []groupJS{}, Roles: []roleJS{}}
	for _, name := range sortedKeys(st.clients) {
		c := st.clients[name]
		j := clientJS{Username: c.Username, ClientID: c.ClientID, TextName: c.TextName,
			TextDescription: c.TextDescription, Disabled: c.Disabled, Roles: refsOut(c.Roles, "role")}
		if c.pw.valid && c.pw.encoded == nil {
			j.Password = base64.StdEncoding.EncodeToString(c.pw.hash)
			j.Salt = base64.StdEncoding.EncodeToString(c.pw.salt)
			j.Iterations = c.pw.iterations
		}
		if c.pw.encoded != nil {
			j.EncodedPassword = c.pw.text
		}
		f.Clients = append(f.Clients, j)
	}
	for _, name := range sortedKeys(st.groups) {
		g := st.groups[name]
		f.Groups = append(f.Groups, groupJS{Groupname: g.Name, TextName: g.TextName,
			TextDescription: g.TextDescription, Roles: refsOut(g.Roles, "role"), Clients: refsOut(g.Clients, "client")})
	}
	for _, name := range sortedKeys(st.roles) {
		r := st.roles[name]
		j := roleJS{Rolename: r.Name, TextName: r.TextName, TextDescription: r.TextDescription, ACLs: []aclJS{}}
		for _, a := range r.sortedACLs() {
			j.ACLs = append(j.ACLs, aclJS{ACLType: a.Type, Topic: a.Topic, Priority: a.Priority, Allow: a.Allow})
		}
		f.Roles = append(f.Roles, j)
	}
	return json.MarshalIndent(&f, "", "\t")
}

// sortedACLs lists a role's ACLs as mosquitto does: by type, then by
// priority, highest first (ties in the order they were added).
func (r *Role) sortedACLs() []ACL {
	out := make([]ACL, 0, len(r.ACLs))
	for _, t := range aclTypes {
		start := len(out)
		for _, a := range r.ACLs {
			if a.Type == t {
				out = append(out, a)
			}
		}
		part := out[start:]
		sort.SliceStable(part, func(i, j int) bool { return part[i].Priority > part[j].Priority })
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// saver writes the file whenever a save is due, off the event loops: a
// new file beside it, synced, then renamed over it (never half written).
func (d *Dynsec) saver() {
	defer close(d.saverDone)
	for range d.saveWant {
		d.mu.Lock()
		b, err := d.st.marshal()
		answers := d.pending
		d.pending, d.unsaved, d.holding = nil, false, true
		d.mu.Unlock()
		if err == nil {
			err = writeAtomic(d.path, b)
		}
		if err != nil {
			d.log.Printf("Error: dynsec: saving %s: %v", d.path, err)
			d.saveErr.Store(&err)
		}
		d.publishAll(answers)
		// Answers queued behind these that no change waits for go now; those
		// behind a newer change wait for its save (saveWant is signalled).
		d.mu.Lock()
		for !d.unsaved && len(d.pending) > 0 {
			answers, d.pending = d.pending, nil
			d.mu.Unlock()
			d.publishAll(answers)
			d.mu.Lock()
		}
		d.holding = d.unsaved
		d.mu.Unlock()
		select {
		case d.saved <- struct{}{}:
		default:
		}
	}
}

func (d *Dynsec) publishAll(answers [][]byte) {
	for _, b := range answers {
		if d.Publish != nil {
			d.Publish(Topic+"/response", b)
		}
	}
}

// answer publishes a response, or queues it behind a save still due (of
// its own change or an earlier one), so that responses keep their order
// and each one is sent once the file holds what it reports.
func (d *Dynsec) answer(b []byte) {
	d.mu.Lock()
	if d.unsaved || d.holding {
		d.pending = append(d.pending, b)
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	d.publishAll([][]byte{b})
}

// save asks the saver to write the file (coalesced). Assumes d.mu is held.
func (d *Dynsec) save() {
	if d.closed {
		return
	}
	d.unsaved = true
	select {
	case d.saveWant <- struct{}{}:
	default:
	}
}

// Close writes a save still pending and stops the saver (at shutdown). It
// returns the last save's error, if any. Administration after Close is not
// saved.
func (d *Dynsec) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		close(d.saveWant) // the saver writes what is due, then stops
		d.mu.Unlock()
	})
	<-d.saverDone
	if e := d.saveErr.Load(); e != nil {
		return *e
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil {
		_ = os.Chmod(tmp.Name(), fi.Mode().Perm())
	}
	return os.Rename(tmp.Name(), path)
}

func hashPassword(pw []byte, salt []byte, iterations int) []byte {
	return pbkdf2.Key(pw, salt, iterations, hashLen, sha512.New)
}

func newPassword(pw string) (password, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return password{}, err
	}
	return password{valid: true, iterations: defaultIterations, salt: salt,
		hash: hashPassword([]byte(pw), salt, defaultIterations)}, nil
}

func (p *password) check(pw []byte) bool {
	if p.encoded != nil {
		return p.encoded.Check([]byte("u"), pw)
	}
	return subtle.ConstantTimeCompare(hashPassword(pw, p.salt, p.iterations), p.hash) == 1
}

// Authenticate implements auth.Provider as the plugin does: clients without
// a username or password, unknown usernames and clients without a password
// are left to the next method; a disabled client, a wrong client id or a
// wrong password is refused (mosquitto 2.0: not authorised).
func (d *Dynsec) Authenticate(l *auth.Login, _ *session.Client) (auth.Result, byte) {
	if !l.HasUsername || !l.HasPassword {
		return auth.Defer, 0
	}
	c := d.snap.Load().clients[string(l.Username)]
	switch {
	case c == nil:
		return auth.Defer, 0
	case c.disabled:
		return auth.Deny, codec.NotAuthorized
	case c.clientID != "" && c.clientID != l.ClientID:
		return auth.Deny, codec.NotAuthorized
	case !c.pw.valid:
		return auth.Defer, 0
	case c.pw.check(l.Password):
		return auth.Allow, 0
	}
	return auth.Deny, codec.NotAuthorized
}

// Check implements auth.Provider with the snapshot (see compile).
func (d *Dynsec) Check(ci *session.ClientInfo, topic string, access session.Access, _ *session.Client) auth.Result {
	return d.snap.Load().check(ci, topic, access)
}
