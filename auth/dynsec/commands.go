package dynsec

import "sort"

// The commands of mosquitto_ctrl_dynsec(1), with the plugin's error
// messages. Each changes o.st and lists whom the change must disconnect.

// refOut is a role, group or client reference as the plugin writes it, in
// replies as in its file.
type refOut = refJS

// ordered is refs in mosquitto's order, which its answers and its file
// show and in which it applies roles: by priority, highest first, then by
// name for role and group lists (byPriority), by name alone for a group's
// clients.
func ordered(refs []RoleRef, byPriority bool) []RoleRef {
	rs := append([]RoleRef(nil), refs...)
	sort.SliceStable(rs, func(i, j int) bool {
		if byPriority && rs[i].Priority != rs[j].Priority {
			return rs[i].Priority > rs[j].Priority
		}
		return rs[i].Name < rs[j].Name
	})
	return rs
}

func refsOut(refs []RoleRef, kind string) []refOut {
	out := []refOut{}
	for _, r := range ordered(refs, kind != "client") {
		j := refOut{}
		switch kind {
		case "role":
			j.Rolename = r.Name
		case "group":
			j.Groupname = r.Name
		default:
			j.Username = r.Name
		}
		if r.Priority != -1 {
			p := r.Priority
			j.Priority = &p
		}
		out = append(out, j)
	}
	return out
}

// Clients.

type clientOut struct {
	Username        string   `json:"username"`
	ClientID        string   `json:"clientid,omitempty"`
	TextName        string   `json:"textname,omitempty"`
	TextDescription string   `json:"textdescription,omitempty"`
	Disabled        bool     `json:"disabled,omitempty"`
	Roles           []refOut `json:"roles"`
	Groups          []refOut `json:"groups"`
}

func (o *op) clientOut(c *Client) clientOut {
	var groups []RoleRef
	for _, name := range sortedKeys(o.st.groups) {
		for _, m := range o.st.groups[name].Clients {
			if m.Name == c.Username {
				groups = append(groups, RoleRef{Name: name, Priority: m.Priority})
			}
		}
	}
	return clientOut{Username: c.Username, ClientID: c.ClientID, TextName: c.TextName,
		TextDescription: c.TextDescription, Disabled: c.Disabled,
		Roles: refsOut(c.Roles, "role"), Groups: refsOut(groups, "group")}
}

func createClient(o *op, a args) (any, string) {
	username, ok := a.str("username")
	if !ok {
		return nil, "Invalid/missing username"
	}
	pw, hasPW, bad := a.optStr("password")
	if bad {
		return nil, "Invalid/missing password"
	}
	clientID, _, bad := a.optStr("clientid")
	if bad {
		return nil, "Invalid/missing client id"
	}
	textName, textDesc, e := a.texts()
	if e != "" {
		return nil, e
	}
	if o.st.clients[username] != nil {
		return nil, "Client already exists"
	}
	c := &Client{Username: username, ClientID: clientID, TextName: textName, TextDescription: textDesc}
	if hasPW {
		p, err := newPassword(pw)
		if err != nil {
			return nil, "Internal error"
		}
		c.pw = p
	}
	if items, present, ok := a.list("roles"); present {
		if !ok {
			return nil, "'roles' not an array or missing/invalid rolename"
		}
		refs, e := refsFrom(items, "rolename", o.roleExists)
		switch e {
		case "notfound":
			return nil, "Role not found"
		case "invalid":
			return nil, "'roles' not an array or missing/invalid rolename"
		}
		c.Roles = refs
	}
	var groups []RoleRef
	if items, _, ok := a.list("groups"); ok {
		refs, e := refsFrom(items, "groupname", o.groupExists)
		if e == "notfound" {
			return nil, "Group not found"
		}
		groups = refs
	}
	o.st.clients[username] = c
	for _, g := range groups {
		gr := o.st.groups[g.Name]
		if !hasRef(gr.Clients, username) {
			gr.Clients = append(gr.Clients, RoleRef{Name: username, Priority: g.Priority})
		}
	}
	o.changed = true
	return nil, ""
}

func (o *op) client(a args) (*Client, string) {
	username, ok := a.str("username")
	if !ok {
		return nil, "Invalid/missing username"
	}
	c := o.st.clients[username]
	if c == nil {
		return nil, "Client not found"
	}
	return c, ""
}

func deleteClient(o *op, a args) (any, string) {
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	for _, g := range o.st.groups {
		g.Clients, _ = dropRef(g.Clients, c.Username)
	}
	delete(o.st.clients, c.Username)
	o.changed = true
	o.kick(c.Username)
	return nil, ""
}

func getClient(o *op, a args) (any, string) {
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	return map[string]any{"client": o.clientOut(c)}, ""
}

func listClients(o *op, a args) (any, string) {
	verbose := a.boolean("verbose", false)
	return renameItems(listPage(sortedKeys(o.st.clients), a, func(n string) any {
		if verbose {
			return o.clientOut(o.st.clients[n])
		}
		return n
	}), "clients"), ""
}

func modifyClient(o *op, a args) (any, string) {
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	if id, ok := a.str("clientid"); ok {
		c.ClientID = id
	}
	if pw, ok := a.str("password"); ok {
		if pw == "" {
			return nil, "Empty password is not allowed"
		}
		p, err := newPassword(pw)
		if err != nil {
			return nil, "Internal error"
		}
		c.pw = p
	}
	if s, ok := a.str("textname"); ok {
		c.TextName = s
	}
	if s, ok := a.str("textdescription"); ok {
		c.TextDescription = s
	}
	if items, present, ok := a.list("roles"); present {
		refs, e := refsFrom(items, "rolename", o.roleExists)
		switch {
		case !ok || e == "invalid":
			return nil, "'roles' not an array or missing/invalid rolename"
		case e == "notfound":
			return nil, "Role not found"
		}
		c.Roles = refs
	}
	if items, present, ok := a.list("groups"); present && ok {
		refs, e := refsFrom(items, "groupname", o.groupExists)
		if e == "notfound" {
			return nil, "Group not found"
		}
		for _, g := range o.st.groups {
			g.Clients, _ = dropRef(g.Clients, c.Username)
		}
		for _, g := range refs {
			gr := o.st.groups[g.Name]
			gr.Clients = append(gr.Clients, RoleRef{Name: c.Username, Priority: g.Priority})
		}
	}
	o.changed = true
	o.kick(c.Username)
	return nil, ""
}

func setClientPassword(o *op, a args) (any, string) {
	if _, ok := a.str("username"); !ok {
		return nil, "Invalid/missing username"
	}
	pw, ok := a.str("password")
	if !ok {
		return nil, "Invalid/missing password"
	}
	if pw == "" {
		return nil, "Empty password is not allowed"
	}
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	p, err := newPassword(pw)
	if err != nil {
		return nil, "Internal error"
	}
	c.pw = p
	o.changed = true
	o.kick(c.Username)
	return nil, ""
}

func setClientID(o *op, a args) (any, string) {
	if _, ok := a.str("username"); !ok {
		return nil, "Invalid/missing username"
	}
	id, _, bad := a.optStr("clientid")
	if bad {
		return nil, "Invalid/missing client ID"
	}
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	c.ClientID = id
	o.changed = true
	o.kick(c.Username)
	return nil, ""
}

func addClientRole(o *op, a args) (any, string) {
	if _, ok := a.str("username"); !ok {
		return nil, "Invalid/missing username"
	}
	role, ok := a.str("rolename")
	if !ok {
		return nil, "Invalid/missing rolename"
	}
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	if o.st.roles[role] == nil {
		return nil, "Role not found"
	}
	c.Roles, _ = dropRef(c.Roles, role)
	c.Roles = append(c.Roles, RoleRef{Name: role, Priority: a.integer("priority", -1)})
	o.changed = true
	o.kick(c.Username)
	return nil, ""
}

func removeClientRole(o *op, a args) (any, string) {
	if _, ok := a.str("username"); !ok {
		return nil, "Invalid/missing username"
	}
	role, ok := a.str("rolename")
	if !ok {
		return nil, "Invalid/missing rolename"
	}
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	if o.st.roles[role] == nil {
		return nil, "Role not found"
	}
	c.Roles, _ = dropRef(c.Roles, role)
	o.changed = true
	o.kick(c.Username)
	return nil, ""
}

func enableClient(o *op, a args) (any, string) {
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	c.Disabled = false
	o.changed = true
	return nil, ""
}

func disableClient(o *op, a args) (any, string) {
	c, e := o.client(a)
	if e != "" {
		return nil, e
	}
	c.Disabled = true
	o.changed = true
	o.kick(c.Username)
	return nil, ""
}

// Groups.

type groupOut struct {
	Groupname       string   `json:"groupname"`
	TextName        string   `json:"textname,omitempty"`
	TextDescription string   `json:"textdescription,omitempty"`
	Clients         []refOut `json:"clients"`
	Roles           []refOut `json:"roles"`
}

func groupJSON(g *Group) groupOut {
	clients := []refOut{}
	for _, c := range ordered(g.Clients, false) {
		clients = append(clients, refOut{Username: c.Name}) // without their priorities, as mosquitto
	}
	return groupOut{Groupname: g.Name, TextName: g.TextName, TextDescription: g.TextDescription,
		Clients: clients, Roles: refsOut(g.Roles, "role")}
}

func (o *op) group(a args) (*Group, string) {
	name, ok := a.str("groupname")
	if !ok {
		return nil, "Invalid/missing groupname"
	}
	g := o.st.groups[name]
	if g == nil {
		return nil, "Group not found"
	}
	return g, ""
}

func createGroup(o *op, a args) (any, string) {
	name, ok := a.str("groupname")
	if !ok {
		return nil, "Invalid/missing groupname"
	}
	textName, textDesc, e := a.texts()
	if e != "" {
		return nil, e
	}
	if o.st.groups[name] != nil {
		return nil, "Group already exists"
	}
	g := &Group{Name: name, TextName: textName, TextDescription: textDesc}
	if items, present, ok := a.list("roles"); present {
		refs, e := refsFrom(items, "rolename", o.roleExists)
		switch {
		case !ok || e == "invalid":
			return nil, "'roles' not an array or missing/invalid rolename"
		case e == "notfound":
			return nil, "Role not found"
		}
		g.Roles = refs
	}
	o.st.groups[name] = g
	o.changed = true
	return nil, ""
}

func deleteGroup(o *op, a args) (any, string) {
	g, e := o.group(a)
	if e != "" {
		return nil, e
	}
	o.kickGroup(g)
	if o.st.anonymous == g.Name {
		o.st.anonymous = ""
	}
	delete(o.st.groups, g.Name)
	o.changed = true
	return nil, ""
}

func getGroup(o *op, a args) (any, string) {
	g, e := o.group(a)
	if e != "" {
		return nil, e
	}
	return map[string]any{"group": groupJSON(g)}, ""
}

func listGroups(o *op, a args) (any, string) {
	verbose := a.boolean("verbose", false)
	return renameItems(listPage(sortedKeys(o.st.groups), a, func(n string) any {
		if verbose {
			return groupJSON(o.st.groups[n])
		}
		return n
	}), "groups"), ""
}

func modifyGroup(o *op, a args) (any, string) {
	g, e := o.group(a)
	if e != "" {
		return nil, e
	}
	if s, ok := a.str("textname"); ok {
		g.TextName = s
	}
	if s, ok := a.str("textdescription"); ok {
		g.TextDescription = s
	}
	if items, present, ok := a.list("roles"); present {
		refs, e := refsFrom(items, "rolename", o.roleExists)
		switch {
		case !ok || e == "invalid":
			return nil, "'roles' not an array or missing/invalid rolename"
		case e == "notfound":
			return nil, "Role not found"
		}
		g.Roles = refs
	}
	if items, present, ok := a.list("clients"); present && ok {
		o.kickGroup(g)
		refs, _ := refsFrom(items, "username", func(n string) bool { return o.st.clients[n] != nil })
		g.Clients = refs
	}
	o.kickGroup(g)
	o.changed = true
	return nil, ""
}

func addGroupClient(o *op, a args) (any, string) {
	username, ok := a.str("username")
	if !ok {
		return nil, "Invalid/missing username"
	}
	if _, ok := a.str("groupname"); !ok {
		return nil, "Invalid/missing groupname"
	}
	if o.st.clients[username] == nil {
		return nil, "Client not found"
	}
	g, e := o.group(a)
	if e != "" {
		return nil, e
	}
	if hasRef(g.Clients, username) {
		return nil, "Client is already in this group"
	}
	g.Clients = append(g.Clients, RoleRef{Name: username, Priority: a.integer("priority", -1)})
	o.changed = true
	o.kick(username)
	return nil, ""
}

func removeGroupClient(o *op, a args) (any, string) {
	username, ok := a.str("username")
	if !ok {
		return nil, "Invalid/missing username"
	}
	if _, ok := a.str("groupname"); !ok {
		return nil, "Invalid/missing groupname"
	}
	if o.st.clients[username] == nil {
		return nil, "Client not found"
	}
	g, e := o.group(a)
	if e != "" {
		return nil, e
	}
	g.Clients, _ = dropRef(g.Clients, username)
	o.changed = true
	o.kick(username)
	return nil, ""
}

func addGroupRole(o *op, a args) (any, string) {
	if _, ok := a.str("groupname"); !ok {
		return nil, "Invalid/missing groupname"
	}
	role, ok := a.str("rolename")
	if !ok {
		return nil, "Invalid/missing rolename"
	}
	g, e := o.group(a)
	if e != "" {
		return nil, e
	}
	if o.st.roles[role] == nil {
		return nil, "Role not found"
	}
	if hasRef(g.Roles, role) {
		return nil, "Group is already in this role"
	}
	g.Roles = append(g.Roles, RoleRef{Name: role, Priority: a.integer("priority", -1)})
	o.changed = true
	o.kickGroup(g)
	return nil, ""
}

func removeGroupRole(o *op, a args) (any, string) {
	if _, ok := a.str("groupname"); !ok {
		return nil, "Invalid/missing groupname"
	}
	role, ok := a.str("rolename")
	if !ok {
		return nil, "Invalid/missing rolename"
	}
	g, e := o.group(a)
	if e != "" {
		return nil, e
	}
	if o.st.roles[role] == nil {
		return nil, "Role not found"
	}
	g.Roles, _ = dropRef(g.Roles, role)
	o.changed = true
	o.kickGroup(g)
	return nil, ""
}

func setAnonymousGroup(o *op, a args) (any, string) {
	g, e := o.group(a)
	if e != "" {
		return nil, e
	}
	o.st.anonymous = g.Name
	o.changed = true
	o.kicks = append(o.kicks, kickOf{anonymous: true})
	return nil, ""
}

func getAnonymousGroup(o *op, _ args) (any, string) {
	return map[string]any{"group": map[string]string{"groupname": o.st.anonymous}}, ""
}

// Roles.

type aclOut struct {
	ACLType  string `json:"acltype"`
	Topic    string `json:"topic"`
	Priority int    `json:"priority"`
	Allow    bool   `json:"allow"`
}

type roleOut struct {
	Rolename        string   `json:"rolename"`
	TextName        string   `json:"textname,omitempty"`
	TextDescription string   `json:"textdescription,omitempty"`
	ACLs            []aclOut `json:"acls"`
}

func roleJSON(r *Role) roleOut {
	acls := []aclOut{}
	for _, a := range r.sortedACLs() {
		acls = append(acls, aclOut{a.Type, a.Topic, a.Priority, a.Allow})
	}
	return roleOut{Rolename: r.Name, TextName: r.TextName, TextDescription: r.TextDescription, ACLs: acls}
}

func (o *op) role(a args, missing string) (*Role, string) {
	name, ok := a.str("rolename")
	if !ok {
		return nil, "Invalid/missing rolename"
	}
	r := o.st.roles[name]
	if r == nil {
		return nil, missing
	}
	return r, ""
}

// aclsFrom reads a role's "acls" array.
func aclsFrom(items []args) ([]ACL, string) {
	var out []ACL
	for _, it := range items {
		t, _ := it.str("acltype")
		typ, ok := aclType(t)
		if !ok {
			return nil, "Unknown acltype"
		}
		topic, ok := it.str("topic")
		if !ok {
			return nil, "Invalid/missing topic"
		}
		if !validTopic(topic) {
			return nil, "Invalid ACL topic"
		}
		out = append(out, ACL{Type: typ, Topic: topic, Priority: it.integer("priority", 0), Allow: it.boolean("allow", false)})
	}
	return out, ""
}

func createRole(o *op, a args) (any, string) {
	name, ok := a.str("rolename")
	if !ok {
		return nil, "Invalid/missing rolename"
	}
	textName, textDesc, e := a.texts()
	if e != "" {
		return nil, e
	}
	if o.st.roles[name] != nil {
		return nil, "Role already exists"
	}
	r := &Role{Name: name, TextName: textName, TextDescription: textDesc}
	if items, _, ok := a.list("acls"); ok {
		acls, e := aclsFrom(items)
		if e != "" {
			return nil, e
		}
		r.ACLs = acls
	}
	o.st.roles[name] = r
	o.changed = true
	return nil, ""
}

func getRole(o *op, a args) (any, string) {
	r, e := o.role(a, "Role not found")
	if e != "" {
		return nil, e
	}
	return map[string]any{"role": roleJSON(r)}, ""
}

func listRoles(o *op, a args) (any, string) {
	verbose := a.boolean("verbose", false)
	return renameItems(listPage(sortedKeys(o.st.roles), a, func(n string) any {
		if verbose {
			return roleJSON(o.st.roles[n])
		}
		return n
	}), "roles"), ""
}

func modifyRole(o *op, a args) (any, string) {
	r, e := o.role(a, "Role does not exist")
	if e != "" {
		return nil, e
	}
	if s, ok := a.str("textname"); ok {
		r.TextName = s
	}
	if s, ok := a.str("textdescription"); ok {
		r.TextDescription = s
	}
	if items, present, ok := a.list("acls"); present && ok {
		acls, e := aclsFrom(items)
		if e != "" {
			return nil, e
		}
		r.ACLs = acls
	}
	o.changed = true
	o.kickRole(r.Name)
	return nil, ""
}

func deleteRole(o *op, a args) (any, string) {
	r, e := o.role(a, "Role not found")
	if e != "" {
		return nil, e
	}
	o.kickRole(r.Name)
	for _, c := range o.st.clients {
		c.Roles, _ = dropRef(c.Roles, r.Name)
	}
	for _, g := range o.st.groups {
		g.Roles, _ = dropRef(g.Roles, r.Name)
	}
	delete(o.st.roles, r.Name)
	o.changed = true
	return nil, ""
}

// roleACL reads the role, ACL type and topic that addRoleACL and
// removeRoleACL take, or the error the plugin gives for the first bad one.
func (o *op) roleACL(a args) (r *Role, typ, topic, e string) {
	if r, e = o.role(a, "Role not found"); e != "" {
		return nil, "", "", e
	}
	t, ok := a.str("acltype")
	if !ok {
		return nil, "", "", "Invalid/missing acltype"
	}
	if typ, ok = aclType(t); !ok {
		return nil, "", "", "Unknown acltype"
	}
	if topic, ok = a.str("topic"); !ok {
		return nil, "", "", "Invalid/missing topic"
	}
	if !validTopic(topic) {
		return nil, "", "", "Invalid ACL topic"
	}
	return r, typ, topic, ""
}

func addRoleACL(o *op, a args) (any, string) {
	r, typ, topic, e := o.roleACL(a)
	if e != "" {
		return nil, e
	}
	for _, x := range r.ACLs {
		if x.Type == typ && x.Topic == topic {
			return nil, "ACL with this topic already exists"
		}
	}
	r.ACLs = append(r.ACLs, ACL{Type: typ, Topic: topic, Priority: a.integer("priority", 0), Allow: a.boolean("allow", false)})
	o.changed = true
	o.kickRole(r.Name)
	return nil, ""
}

func removeRoleACL(o *op, a args) (any, string) {
	r, typ, topic, e := o.roleACL(a)
	if e != "" {
		return nil, e
	}
	for i, x := range r.ACLs {
		if x.Type == typ && x.Topic == topic {
			r.ACLs = append(r.ACLs[:i:i], r.ACLs[i+1:]...)
			o.changed = true
			o.kickRole(r.Name)
			return nil, ""
		}
	}
	return nil, "ACL not found"
}
