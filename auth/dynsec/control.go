package dynsec

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/trie"
)

// Topic is where administration commands are published; responses go to
// Topic + "/response".
const Topic = "$CONTROL/dynamic-security/v1"

// args is one command object; keys are looked up without regard to case,
// as cJSON_GetObjectItem does.
type args map[string]json.RawMessage

func (a args) raw(key string) (json.RawMessage, bool) {
	v, ok := a[strings.ToLower(key)]
	return v, ok
}

// str is a string field: ok when present and a string.
func (a args) str(key string) (string, bool) {
	v, ok := a.raw(key)
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// texts reads the optional textname and textdescription of a create
// command, or the error mosquitto answers when one is not a string.
func (a args) texts() (name, desc, e string) {
	name, _, bad := a.optStr("textname")
	if bad {
		return "", "", "Invalid/missing textname"
	}
	desc, _, bad = a.optStr("textdescription")
	if bad {
		return "", "", "Invalid/missing textdescription"
	}
	return name, desc, ""
}

// optStr is an optional string field: bad when present but not a string.
func (a args) optStr(key string) (s string, present, bad bool) {
	if _, ok := a.raw(key); !ok {
		return "", false, false
	}
	s, ok := a.str(key)
	return s, ok, !ok
}

func (a args) integer(key string, def int) int {
	if v, ok := a.raw(key); ok {
		var f float64
		if json.Unmarshal(v, &f) == nil {
			return int(f)
		}
	}
	return def
}

func (a args) boolean(key string, def bool) bool {
	if v, ok := a.raw(key); ok {
		var b bool
		if json.Unmarshal(v, &b) == nil {
			return b
		}
	}
	return def
}

// list is an array of objects: present reports the key was there, ok that
// it is an array.
func (a args) list(key string) (items []args, present, ok bool) {
	v, present := a.raw(key)
	if !present {
		return nil, false, false
	}
	var raw []json.RawMessage
	if json.Unmarshal(v, &raw) != nil {
		return nil, true, false
	}
	for _, r := range raw {
		if o := parseArgs(r); o != nil {
			items = append(items, o)
		}
	}
	return items, true, true
}

func parseArgs(r json.RawMessage) args {
	var m map[string]json.RawMessage
	if json.Unmarshal(r, &m) != nil || m == nil {
		return nil
	}
	a := make(args, len(m))
	for k, v := range m {
		a[strings.ToLower(k)] = v
	}
	return a
}

// op is one administration run: the state it changes, and who must be
// disconnected for the change to apply to them (as mosquitto does).
type op struct {
	st      *state
	changed bool
	kicks   []kickOf
	admin   *session.ClientInfo
}

type kickOf struct {
	username  string
	anonymous bool
}

func (o *op) kick(username string) { o.kicks = append(o.kicks, kickOf{username: username}) }

func (o *op) kickGroup(g *Group) {
	if g.Name == o.st.anonymous {
		o.kicks = append(o.kicks, kickOf{anonymous: true})
	}
	for _, c := range g.Clients {
		o.kick(c.Name)
	}
}

func (o *op) kickRole(name string) {
	for _, c := range o.st.clients {
		if hasRef(c.Roles, name) {
			o.kick(c.Username)
		}
	}
	for _, g := range o.st.groups {
		if hasRef(g.Roles, name) {
			o.kickGroup(g)
		}
	}
}

func hasRef(refs []RoleRef, name string) bool {
	for _, r := range refs {
		if r.Name == name {
			return true
		}
	}
	return false
}

func dropRef(refs []RoleRef, name string) ([]RoleRef, bool) {
	for i, r := range refs {
		if r.Name == name {
			return append(refs[:i:i], refs[i+1:]...), true
		}
	}
	return refs, false
}

// response is one element of "responses".
type response struct {
	Command         string `json:"command"`
	Error           string `json:"error,omitempty"`
	Data            any    `json:"data,omitempty"`
	CorrelationData string `json:"correlationData,omitempty"`
}

// Control implements session.ControlHandler: it runs the commands of one
// PUBLISH to Topic, disconnects the clients the changes affect, and
// publishes the responses once the file is saved with the changes.
func (d *Dynsec) Control(ci *session.ClientInfo, topic string, payload []byte) {
	if topic != Topic {
		return
	}
	responses := []response{} // "responses": [] for no commands
	var top map[string]json.RawMessage
	if !json.Valid(payload) {
		responses = append(responses, response{Command: "Unknown command", Error: "Payload not valid JSON"})
	} else if json.Unmarshal(payload, &top) != nil {
		// Valid JSON but not an object: no commands in it, as mosquitto says.
		responses = append(responses, response{Command: "Unknown command", Error: "Invalid/missing commands"})
	} else {
		var cmds []json.RawMessage
		raw, ok := args(lower(top)).raw("commands")
		if !ok || json.Unmarshal(raw, &cmds) != nil {
			responses = append(responses, response{Command: "Unknown command", Error: "Invalid/missing commands"})
		} else {
			responses = d.run(ci, cmds)
		}
	}
	b, err := json.Marshal(map[string]any{"responses": responses})
	if err == nil {
		d.answer(b)
	}
}

func lower(m map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

func (d *Dynsec) run(ci *session.ClientInfo, cmds []json.RawMessage) []response {
	d.mu.Lock()
	o := &op{st: d.st, admin: ci}
	out := []response{}
	for _, raw := range cmds {
		a := parseArgs(raw)
		if a == nil {
			out = append(out, response{Command: "Unknown command", Error: "Command not an object"})
			continue
		}
		cd, _, badCD := a.optStr("correlationData")
		name, ok := a.str("command")
		if !ok {
			out = append(out, response{Command: "Unknown command", Error: "Missing command", CorrelationData: cd})
			continue
		}
		if badCD {
			out = append(out, response{Command: name, Error: "Invalid correlationData data type."})
			break
		}
		r := response{Command: name, CorrelationData: cd}
		h, ok := commands[strings.ToLower(name)]
		if !ok {
			r.Error = "Unknown command"
		} else if e := badText(a); e != "" {
			r.Error = e
		} else {
			r.Data, r.Error = h(o, a)
			if r.Error == "" {
				user := "-"
				if ci != nil {
					user = ci.ClientID + "/" + ci.Username
				}
				d.log.Printf("dynsec: %s | %s", user, name)
			}
		}
		out = append(out, r)
	}
	if o.changed {
		d.snap.Store(compile(d.st))
		d.save()
	}
	d.mu.Unlock()
	if d.Kick != nil {
		seen := map[kickOf]bool{}
		for _, k := range o.kicks {
			if !seen[k] {
				seen[k] = true
				d.Kick(k.username, k.anonymous)
			}
		}
	}
	return out
}

// textFields are the name fields of a command whose text must be fit for
// MQTT, with the words of the plugin's error for each.
var textFields = []struct{ key, what string }{
	{"username", "Username"}, {"clientid", "Client ID"}, {"groupname", "Group name"},
	{"rolename", "Role name"}, {"topic", "Topic"},
}

// badText is the error for the first name field of a that is a string but
// not one MQTT carries (mosquitto's rules: no control characters, no
// non-characters, well formed), or "".
func badText(a args) string {
	for _, f := range textFields {
		if v, ok := a.str(f.key); ok && !fitText(v) {
			return f.what + " not valid UTF-8"
		}
	}
	return ""
}

// fitText reports whether s is well-formed UTF-8 without control characters
// (U+0000–U+001F, U+007F–U+009F) and without non-characters (U+FDD0–U+FDEF,
// and the last two code points of every plane).
func fitText(s string) bool {
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			return false // ill-formed (json.Unmarshal replaced it)
		case r <= 0x1F || (r >= 0x7F && r <= 0x9F):
			return false
		case r >= 0xFDD0 && r <= 0xFDEF:
			return false
		case r&0xFFFE == 0xFFFE:
			return false
		}
	}
	return true
}

type handler func(o *op, a args) (data any, err string)

var commands map[string]handler

func init() {
	commands = map[string]handler{}
	for name, h := range map[string]handler{
		"setDefaultACLAccess": setDefaultACLAccess, "getDefaultACLAccess": getDefaultACLAccess,
		"createClient": createClient, "deleteClient": deleteClient, "getClient": getClient,
		"listClients": listClients, "modifyClient": modifyClient, "setClientPassword": setClientPassword,
		"setClientId": setClientID, "addClientRole": addClientRole, "removeClientRole": removeClientRole,
		"enableClient": enableClient, "disableClient": disableClient,
		"createGroup": createGroup, "deleteGroup": deleteGroup, "getGroup": getGroup, "listGroups": listGroups,
		"modifyGroup": modifyGroup, "addGroupClient": addGroupClient, "removeGroupClient": removeGroupClient,
		"addGroupRole": addGroupRole, "removeGroupRole": removeGroupRole,
		"setAnonymousGroup": setAnonymousGroup, "getAnonymousGroup": getAnonymousGroup,
		"createRole": createRole, "getRole": getRole, "listRoles": listRoles, "modifyRole": modifyRole,
		"deleteRole": deleteRole, "addRoleACL": addRoleACL, "removeRoleACL": removeRoleACL,
	} {
		commands[strings.ToLower(name)] = h
	}
}

// Plugin-wide commands.

func setDefaultACLAccess(o *op, a args) (any, string) {
	acls, _, ok := a.list("acls")
	if !ok {
		return nil, "Missing/invalid actions array"
	}
	for _, acl := range acls {
		t, _ := acl.str("acltype")
		if _, ok := acl.raw("allow"); !ok {
			continue
		}
		allow := acl.boolean("allow", false)
		switch strings.ToLower(t) {
		case "publishclientsend":
			o.st.defaults.PublishClientSend = allow
		case "publishclientreceive":
			o.st.defaults.PublishClientReceive = allow
		case "subscribe":
			o.st.defaults.Subscribe = allow
		case "unsubscribe":
			o.st.defaults.Unsubscribe = allow
		}
	}
	o.changed = true
	return nil, ""
}

func getDefaultACLAccess(o *op, _ args) (any, string) {
	d := o.st.defaults
	type acl struct {
		ACLType string `json:"acltype"`
		Allow   bool   `json:"allow"`
	}
	return map[string]any{"acls": []acl{{PublishClientSend, d.PublishClientSend},
		{PublishClientReceive, d.PublishClientReceive}, {"subscribe", d.Subscribe}, {"unsubscribe", d.Unsubscribe}}}, ""
}

// refsFrom reads a "roles" or "groups" array of {name, priority}: errNotFound
// when a name does not exist.
func refsFrom(items []args, key string, exists func(string) bool) ([]RoleRef, string) {
	var refs []RoleRef
	for _, it := range items {
		name, ok := it.str(key)
		if !ok {
			return nil, "invalid"
		}
		if !exists(name) {
			return nil, "notfound"
		}
		refs = append(refs, RoleRef{Name: name, Priority: it.integer("priority", -1)})
	}
	return refs, ""
}

func (o *op) roleExists(n string) bool  { return o.st.roles[n] != nil }
func (o *op) groupExists(n string) bool { return o.st.groups[n] != nil }

// listPage applies listClients/listGroups/listRoles' count and offset.
func listPage[T any](names []string, a args, item func(string) T) map[string]any {
	offset, count := a.integer("offset", 0), a.integer("count", -1)
	out := []T{}
	for i, n := range names {
		if i < offset {
			continue
		}
		if count >= 0 && len(out) >= count {
			break
		}
		out = append(out, item(n))
	}
	return map[string]any{"totalCount": len(names), "items": out}
}

func renameItems(m map[string]any, key string) map[string]any {
	m[key] = m["items"]
	delete(m, "items")
	return m
}

func validTopic(s string) bool { return s != "" && trie.ValidFilter(s) == nil }
