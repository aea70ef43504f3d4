package dynsec

import (
	"strings"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/session"
)

// snapshot is the state compiled for checks: for each client, the ACLs of
// each kind in the order the plugin tries them, so that a check is one map
// lookup and one walk, with no lock and no allocation. It is never changed:
// administration compiles a new one.
type snapshot struct {
	defaults  Defaults
	clients   map[string]*compiled
	anonymous *compiled // the anonymous group's rules; nil: no anonymous group
}

type compiled struct {
	disabled bool
	clientID string
	pw       password
	// The ACLs of each kind in evaluation order: the client's roles by
	// priority, then its groups by priority and their roles by priority;
	// within a role, by priority (a subscribe or unsubscribe role's
	// literal ACLs before its patterns).
	send, recv, sub, unsub []rule
}

type rule struct {
	topic   string
	allow   bool
	literal bool
}

func compile(st *state) *snapshot {
	s := &snapshot{defaults: st.defaults, clients: make(map[string]*compiled, len(st.clients))}
	groupsOf := map[string][]RoleRef{} // username -> its groups, with the priority it has in each
	for _, g := range st.groups {
		for _, c := range g.Clients {
			groupsOf[c.Name] = append(groupsOf[c.Name], RoleRef{Name: g.Name, Priority: c.Priority})
		}
	}
	for name, c := range st.clients {
		cc := &compiled{disabled: c.Disabled, clientID: c.ClientID, pw: c.pw}
		cc.addRoles(st, c.Roles)
		for _, g := range ordered(groupsOf[name], true) {
			cc.addRoles(st, st.groups[g.Name].Roles)
		}
		s.clients[name] = cc
	}
	if g := st.groups[st.anonymous]; g != nil {
		s.anonymous = &compiled{}
		s.anonymous.addRoles(st, g.Roles)
	}
	return s
}

// addRoles appends the ACLs of roles, highest priority first (then by
// name, as mosquitto orders a role list).
func (cc *compiled) addRoles(st *state, roles []RoleRef) {
	for _, ref := range ordered(roles, true) {
		r := st.roles[ref.Name]
		if r == nil {
			continue
		}
		for _, a := range r.sortedACLs() {
			ru := rule{topic: a.Topic, allow: a.Allow}
			switch a.Type {
			case PublishClientSend:
				cc.send = append(cc.send, ru)
			case PublishClientReceive:
				cc.recv = append(cc.recv, ru)
			case SubscribeLiteral, SubscribePattern:
				ru.literal = a.Type == SubscribeLiteral
				cc.sub = append(cc.sub, ru)
			case UnsubscribeLiteral, UnsubscribePattern:
				ru.literal = a.Type == UnsubscribeLiteral
				cc.unsub = append(cc.unsub, ru)
			}
		}
	}
}

// check is the plugin's acl_check: the client's rules (or the anonymous
// group's), first match wins; no match gives the default for the kind,
// except that $CONTROL topics are never allowed by default; a client
// unknown to dynsec is left to the next method.
func (s *snapshot) check(ci *session.ClientInfo, topic string, access session.Access) auth.Result {
	var cc *compiled
	if ci.HasUsername {
		if cc = s.clients[ci.Username]; cc == nil {
			return auth.Defer
		}
	} else {
		cc = s.anonymous
	}
	var def bool
	var rules []rule
	pattern := auth.MatchTopic
	switch access {
	case session.AccessWrite:
		def = s.defaults.PublishClientSend
		if cc != nil {
			rules = cc.send
		}
	case session.AccessRead:
		def = s.defaults.PublishClientReceive
		if cc != nil {
			rules = cc.recv
		}
	case session.AccessSubscribe:
		def, pattern = s.defaults.Subscribe, subMatchesACL
		if cc != nil {
			rules = cc.sub
		}
	case session.AccessUnsubscribe:
		def, pattern = s.defaults.Unsubscribe, subMatchesACL
		if cc != nil {
			rules = cc.unsub
		}
	default:
		return auth.Defer
	}
	if r, ok := firstMatch(rules, topic, pattern, access == session.AccessSubscribe || access == session.AccessUnsubscribe); ok {
		return r
	}
	if !def || strings.HasPrefix(topic, "$CONTROL") {
		return auth.Defer
	}
	return auth.Allow
}

// firstMatch walks rules in order. For subscriptions, a role's literal
// rules come first in rules and match the filter exactly.
func firstMatch(rules []rule, topic string, pattern func(acl, topic string) bool, sub bool) (auth.Result, bool) {
	for i := range rules {
		r := &rules[i]
		var ok bool
		if sub && r.literal {
			ok = r.topic == topic
		} else {
			ok = pattern(r.topic, topic)
		}
		if ok {
			if r.allow {
				return auth.Allow, true
			}
			return auth.Deny, true
		}
	}
	return 0, false
}

// subMatchesACL reports whether the subscription filter sub lies within
// the ACL filter acl (a subscribePattern): every topic sub can match, acl
// matches too, level by level, with '+' in acl covering any one level of
// sub and a trailing '#' in acl any number.
func subMatchesACL(acl, sub string) bool {
	if acl == "#" {
		return true
	}
	acl, aclHash := cutHash(acl)
	sub, subHash := cutHash(sub)
	if subHash && !aclHash {
		return false
	}
	al, sl := strings.Count(acl, "/")+1, strings.Count(sub, "/")+1
	if al > sl || (sl > al && !aclHash) {
		return false
	}
	for i := 0; i < sl; i++ {
		var st string
		st, sub, _ = strings.Cut(sub, "/")
		if i >= al {
			continue // beyond the ACL's levels: covered by its '#'
		}
		var at string
		at, acl, _ = strings.Cut(acl, "/")
		if at != "+" && at != st {
			return false
		}
	}
	return true
}

// cutHash strips a final "#" or "/#", reporting whether there was one.
func cutHash(s string) (string, bool) {
	switch {
	case s == "#":
		return "", true
	case strings.HasSuffix(s, "/#"):
		return s[:len(s)-2], true
	}
	return s, false
}
