package auth

import (
	"errors"
	"strings"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// Result is one provider's answer, as mosquitto's plugins give it.
type Result uint8

const (
	// Skip: the provider does not take this kind of question (a password
	// file asked about topics). If every provider skips, the broker's own
	// default applies (allow_anonymous; topics allowed).
	Skip Result = iota
	// Defer: no opinion about this client (mosquitto's
	// MOSQ_ERR_PLUGIN_DEFER): the next provider is asked; if all defer,
	// the answer is no.
	Defer
	Allow
	Deny
	// Error: the provider could not answer (an auth service down or slow).
	Error
	// Pending: the answer needs I/O; the client's Ticket is answered later.
	Pending
)

// Login is a CONNECT's credentials.
type Login struct {
	ClientID                 string
	Username, Password       []byte
	HasUsername, HasPassword bool
}

// Provider is one authentication method. Providers are chained in the
// order of the configuration, as mosquitto chains plugins, with the
// password and ACL files last.
type Provider interface {
	// Authenticate answers a CONNECT. w is the client that asks, for a
	// provider that needs I/O (its Ticket); deny is the v5 reason code of a
	// Deny (codec.NotAuthorized or codec.BadUsernameOrPassword).
	Authenticate(l *Login, w *session.Client) (r Result, deny byte)
	// Check answers a topic question. w is nil when the answer is needed at
	// once (a delivery): a provider that would need I/O answers from what it
	// knows. topic is only valid during the call.
	Check(c *session.ClientInfo, topic string, access session.Access, w *session.Client) Result
}

// ReadWaiter is a provider whose answers to delivery (read) questions may
// need I/O. CheckRead answers from what it knows, or Pending while it
// fetches the answer, and then calls wake (if not nil; never during the
// call); the question asked again gets that answer, once at least, even
// without a cache. topic is only valid during the call.
type ReadWaiter interface {
	CheckRead(c *session.ClientInfo, topic string, wake func()) Result
}

// Reloader is a provider that re-reads its files on SIGHUP.
type Reloader interface{ Reload() error }

// Authorizer is a listener's security: allow_anonymous and a chain of
// providers. It implements session.Authorizer and session.Asker, and counts
// every decision in the broker's Stats.
type Authorizer struct {
	allowAnonymous bool
	providers      []Provider
	stats          *session.Stats // nil: not counted
	control        session.ControlHandler
}

// New chains providers; stats (may be nil) counts the decisions.
func New(allowAnonymous bool, stats *session.Stats, providers ...Provider) *Authorizer {
	a := &Authorizer{allowAnonymous: allowAnonymous, providers: providers, stats: stats}
	for _, p := range providers {
		if h, ok := p.(session.ControlHandler); ok && a.control == nil {
			a.control = h
		}
	}
	return a
}

// NewAuthorizer is a chain of the password and ACL files only (empty paths:
// not configured).
func NewAuthorizer(allowAnonymous bool, passwordFile, aclFile string) (*Authorizer, error) {
	f, err := NewFiles(passwordFile, aclFile)
	if err != nil {
		return nil, err
	}
	return New(allowAnonymous, nil, f), nil
}

// SetStats counts the decisions in s from now on. Call it before serving.
func (a *Authorizer) SetStats(s *session.Stats) { a.stats = s }

// Control is the chain's handler of $CONTROL/ topics (dynamic security's),
// or nil.
func (a *Authorizer) Control() session.ControlHandler { return a.control }

// Reload re-reads every provider's files (SIGHUP). On error the old ones
// stay in force; the errors are joined.
func (a *Authorizer) Reload() error {
	var errs []error
	for _, p := range a.providers {
		if r, ok := p.(Reloader); ok {
			if err := r.Reload(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Authenticate implements session.Authorizer: AskConnect with no client to
// wait for.
func (a *Authorizer) Authenticate(clientID string, username, password []byte, hasUsername, hasPassword bool) byte {
	return a.AskConnect(nil, clientID, username, password, hasUsername, hasPassword)
}

// AskConnect implements session.Asker as mosquitto 2.0 decides
// (mosquitto_unpwd_check): the providers in order until one does not defer;
// if none takes credentials, allow_anonymous decides for everyone; if all
// defer, only a client without a username may connect, with
// allow_anonymous.
func (a *Authorizer) AskConnect(w *session.Client, clientID string, username, password []byte, hasUsername, hasPassword bool) byte {
	used := false
	if len(a.providers) > 0 {
		// Made only when asked about: the providers keep a pointer, so it
		// is on the heap (80 B a connect, where no provider is configured
		// mere garbage).
		l := &Login{ClientID: clientID, Username: username, Password: password, HasUsername: hasUsername, HasPassword: hasPassword}
		for _, p := range a.providers {
			r, deny := p.Authenticate(l, w)
			switch r {
			case Skip:
				continue
			case Defer:
				used = true
				continue
			case Allow:
				a.count(Allow)
				return codec.Success
			case Deny:
				a.count(Deny)
				if deny == 0 {
					deny = codec.NotAuthorized
				}
				return deny
			case Error:
				a.count(Error)
				return codec.ServerUnavailable
			case Pending:
				return session.AuthWait
			}
		}
	}
	if a.allowAnonymous && (!used || !hasUsername) {
		a.count(Allow)
		return codec.Success
	}
	a.count(Deny)
	return codec.NotAuthorized
}

// Allow implements session.Authorizer: Ask for a delivery, answered at once.
func (a *Authorizer) Allow(c *session.ClientInfo, topic string, access session.Access) bool {
	return a.Ask(nil, c, topic, access) == session.Allowed
}

// Ask implements session.Asker as mosquitto 2.0 decides
// (mosquitto_acl_check): $ topics' built-in rules first (dollarWritable;
// $share is neither published to nor read); then the providers in order until one does not defer; if
// none takes topic questions everything is allowed; if all defer, no.
func (a *Authorizer) Ask(w *session.Client, c *session.ClientInfo, topic string, access session.Access) session.Decision {
	return a.ask(w, c, topic, access, nil, false)
}

// AskRead implements session.ReadAsker: Ask for a delivery, where a
// provider that needs I/O (a ReadWaiter) answers Pending while it fetches
// the answer and calls wake once it is in.
func (a *Authorizer) AskRead(c *session.ClientInfo, topic string, wake func()) session.Decision {
	return a.ask(nil, c, topic, session.AccessRead, wake, true)
}

func (a *Authorizer) ask(w *session.Client, c *session.ClientInfo, topic string, access session.Access, wake func(), delivery bool) session.Decision {
	if len(topic) > 0 && topic[0] == '$' {
		switch {
		case access == session.AccessWrite && !dollarWritable(topic):
			return a.decide(Deny)
		case access == session.AccessRead && strings.HasPrefix(topic, "$share"):
			return a.decide(Deny) // $share names subscriptions only
		}
	}
	used := false
	for _, p := range a.providers {
		var r Result
		if rw, ok := p.(ReadWaiter); ok && delivery {
			r = rw.CheckRead(c, topic, wake)
		} else {
			r = p.Check(c, topic, access, w)
		}
		switch r {
		case Skip:
		case Defer:
			used = true
		default:
			return a.decide(r)
		}
	}
	if !used {
		return a.decide(Allow)
	}
	return a.decide(Deny)
}

func (a *Authorizer) decide(r Result) session.Decision {
	a.count(r)
	switch r {
	case Allow:
		return session.Allowed
	case Error:
		return session.Failed
	case Pending:
		return session.Wait
	}
	return session.Denied
}

func (a *Authorizer) count(r Result) {
	s := a.stats
	if s == nil {
		return
	}
	switch r {
	case Allow:
		s.AuthAllowed.Add(1)
	case Deny:
		s.AuthDenied.Add(1)
	case Error:
		s.AuthErrors.Add(1)
	}
}

var (
	_ session.Authorizer = (*Authorizer)(nil)
	_ session.Asker      = (*Authorizer)(nil)
	_ session.ReadAsker  = (*Authorizer)(nil)
)

// dollarWritable is mosquitto's built-in rule for publishing to $ topics:
// $SYS belongs to the broker, but for a bridge's state notification
// ($SYS/broker/connection/<name>/state), and $share names subscriptions
// only. Other $ topics are left to the providers.
func dollarWritable(topic string) bool {
	switch {
	case strings.HasPrefix(topic, "$SYS"):
		rest, ok := strings.CutPrefix(topic, "$SYS/broker/connection/")
		_, tail, _ := strings.Cut(rest, "/")
		return ok && tail == "state"
	case strings.HasPrefix(topic, "$share"):
		return false
	}
	return true
}
