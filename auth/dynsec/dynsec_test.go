package dynsec

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/session"
)

// TestSubMatchesACL: a subscribePattern ACL covers a filter when every
// topic the filter matches, the ACL matches too (mosquitto's sub_acl_check).
func TestSubMatchesACL(t *testing.T) {
	cases := []struct {
		acl, sub string
		want     bool
	}{
		{"#", "anything/at/all", true},
		{"#", "#", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "a/#", true},
		{"a/#", "#", false},
		{"a/#", "b", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a/b/c", false},
		{"a/b", "a/+", false},
		{"a/b", "a/b", true},
		{"+/+", "a/b", true},
		{"+/#", "a/b/c", true},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"a", "a/b", false},
		{"a/b/c", "a/b", false},
	}
	for _, c := range cases {
		if got := subMatchesACL(c.acl, c.sub); got != c.want {
			t.Errorf("subMatchesACL(%q, %q) = %v, want %v", c.acl, c.sub, got, c.want)
		}
	}
}

// initFile is what `mosquitto_ctrl dynsec init FILE admin adminpw` writes
// (mosquitto-clients 2.0.11), with its "textName" spelling.
const initFile = `{
	"clients":	[{
			"username":	"admin",
			"textName":	"Dynsec admin user",
			"password":	"BBX07Ljd7BXx4i0i2r97vkPK5cYMWofdnE4TkXNusfyya0y0oblWxLc9vKmIhNZpSVyu+miBJdriwtCcSKjzpA==",
			"salt":	"TjwoxAOIGY7v8NOG",
			"iterations":	101,
			"roles":	[{"rolename":	"admin"}]
		}],
	"roles":	[{
			"rolename":	"admin",
			"acls":	[{"acltype":	"publishClientSend", "topic":	"$CONTROL/dynamic-security/#", "allow":	true},
				{"acltype":	"publishClientReceive", "topic":	"$CONTROL/dynamic-security/#", "allow":	true},
				{"acltype":	"subscribePattern", "topic":	"$CONTROL/dynamic-security/#", "allow":	true},
				{"acltype":	"unsubscribePattern", "topic":	"#", "allow":	true}]
		}],
	"defaultACLAccess":	{"publishClientSend":	false, "publishClientReceive":	true, "subscribe":	false, "unsubscribe":	true}
}`

func openString(t testing.TB, text string) *Dynsec {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dynsec.json")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(path, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() }) // runs before its directory is removed
	return d
}

func TestLoadInitFile(t *testing.T) {
	d := openString(t, initFile)
	c := d.st.clients["admin"]
	if c == nil || c.TextName != "Dynsec admin user" || !c.pw.valid || c.pw.iterations != 101 {
		t.Fatalf("admin: %+v", c)
	}
	// The hash above is of a password we do not know; a new one checks.
	p, _ := newPassword("adminpw")
	c.pw = p
	d.snap.Store(compile(d.st))
	login := func(pw string) auth.Result {
		r, _ := d.Authenticate(&auth.Login{ClientID: "x", Username: []byte("admin"), Password: []byte(pw),
			HasUsername: true, HasPassword: true}, nil)
		return r
	}
	if login("adminpw") != auth.Allow || login("nope") != auth.Deny {
		t.Fatal("password check")
	}
	admin := &session.ClientInfo{ClientID: "x", Username: "admin", HasUsername: true}
	for _, c := range []struct {
		topic string
		acc   session.Access
		want  auth.Result
	}{
		{"$CONTROL/dynamic-security/v1", session.AccessWrite, auth.Allow},
		{"$CONTROL/dynamic-security/#", session.AccessSubscribe, auth.Allow},
		{"other", session.AccessWrite, auth.Defer},         // default deny
		{"other", session.AccessRead, auth.Allow},          // default allow
		{"$CONTROL/other", session.AccessRead, auth.Defer}, // $CONTROL never by default
		{"other", session.AccessSubscribe, auth.Defer},
		{"other", session.AccessUnsubscribe, auth.Allow},
	} {
		if got := d.Check(admin, c.topic, c.acc, nil); got != c.want {
			t.Errorf("%s %d: %d, want %d", c.topic, c.acc, got, c.want)
		}
	}
	if got := d.Check(&session.ClientInfo{Username: "nobody", HasUsername: true}, "x", session.AccessRead, nil); got != auth.Defer {
		t.Errorf("unknown user: %d, want defer", got)
	}
}

// TestEncodedPassword: mosquitto 2.1 writes encoded_password ($7$...), read
// and written back as is.
func TestEncodedPassword(t *testing.T) {
	enc, err := auth.HashPassword([]byte("pw21"))
	if err != nil {
		t.Fatal(err)
	}
	d := openString(t, `{"clients":[{"username":"u","encoded_password":"`+enc+`"}]}`)
	r, _ := d.Authenticate(&auth.Login{Username: []byte("u"), Password: []byte("pw21"), HasUsername: true, HasPassword: true}, nil)
	if r != auth.Allow {
		t.Fatalf("encoded_password: %d", r)
	}
	b, _ := d.st.marshal()
	if !strings.Contains(string(b), enc) {
		t.Fatalf("not written back: %s", b)
	}
}

// TestControlErrors: malformed administration gets mosquitto's replies.
func TestControlErrors(t *testing.T) {
	d := openString(t, initFile)
	var got []string
	d.Publish = func(topic string, payload []byte) { got = append(got, topic+" "+string(payload)) }
	for _, c := range []struct{ in, want string }{
		{`nope`, `{"responses":[{"command":"Unknown command","error":"Payload not valid JSON"}]}`},
		{`{}`, `{"responses":[{"command":"Unknown command","error":"Invalid/missing commands"}]}`},
		{`{"commands":[{"command":"frob","correlationData":"7"}]}`, `{"responses":[{"command":"frob","error":"Unknown command","correlationData":"7"}]}`},
		{`{"commands":[{"command":"createClient"}]}`, `{"responses":[{"command":"createClient","error":"Invalid/missing username"}]}`},
		{`{"commands":[{"command":"getClient","username":"admin","correlationData":"x"}]}`,
			`{"responses":[{"command":"getClient","data":{"client":{"username":"admin","textname":"Dynsec admin user","roles":[{"rolename":"admin"}],"groups":[]}},"correlationData":"x"}]}`},
	} {
		got = got[:0]
		d.Control(&session.ClientInfo{ClientID: "c"}, Topic, []byte(c.in))
		if len(got) != 1 || got[0] != Topic+"/response "+c.want {
			t.Errorf("%s:\n got %v\nwant %s", c.in, got, c.want)
		}
	}
	var v any
	if err := json.Unmarshal([]byte(initFile), &v); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCheckPublish is the publish path's ACL check with dynsec: one map
// lookup and a walk of the client's rules.
func BenchmarkCheckPublish(b *testing.B) {
	d := openString(b, `{"clients":[{"username":"u","roles":[{"rolename":"r"}]}],
		"roles":[{"rolename":"r","acls":[{"acltype":"publishClientSend","topic":"sensors/+/temp","allow":true},
		{"acltype":"publishClientSend","topic":"other/#","allow":true}]}]}`)
	ci := &session.ClientInfo{ClientID: "c", Username: "u", HasUsername: true}
	b.ReportAllocs()
	for b.Loop() {
		if d.Check(ci, "sensors/12/temp", session.AccessWrite, nil) != auth.Allow {
			b.Fatal("denied")
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(initFile))
	f.Add([]byte(`{"clients":[{"username":"u","encoded_password":"$7$1$AAAA$BBBB"}]}`))
	f.Add([]byte(`{"groups":[{"groupname":"g","clients":[{"username":"u"}]}],"anonymousGroup":"g"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parse(b)
		if err != nil {
			return
		}
		out, err := st.marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parse(out); err != nil {
			t.Fatalf("what was written does not read back: %v\n%s", err, out)
		}
		compile(st)
	})
}

// FuzzControl: whatever an admin publishes, the handler answers (one
// response document) and never panics; the state it leaves saves and
// reads back.
func FuzzControl(f *testing.F) {
	f.Add([]byte(`{"commands":[{"command":"createClient","username":"u","password":"p","roles":[{"rolename":"admin","priority":1}],"groups":[{"groupname":"g"}]}]}`))
	f.Add([]byte(`{"commands":[{"command":"createRole","rolename":"r","acls":[{"acltype":"subscribePattern","topic":"a/#","allow":true}]},{"command":"addClientRole","username":"admin","rolename":"r"},{"command":"deleteRole","rolename":"r"}]}`))
	f.Add([]byte(`{"commands":[{"command":"createGroup","groupname":"g"},{"command":"setAnonymousGroup","groupname":"g"},{"command":"deleteGroup","groupname":"g"},{"command":"listGroups","verbose":true,"count":-3,"offset":99}]}`))
	f.Add([]byte(`{"commands":[{"command":"modifyClient","username":"admin","roles":"x","groups":[1,2]},{"command":"setDefaultACLAccess","acls":[{"acltype":"subscribe","allow":true}]}]}`))
	f.Add([]byte(`{"commands":"nope"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		d := openString(t, initFile)
		got := make(chan []byte, 2)
		d.Publish = func(topic string, b []byte) { got <- b }
		d.Control(&session.ClientInfo{ClientID: "c", Username: "admin", HasUsername: true}, Topic, payload)
		// A response that reports a change comes once the file is saved,
		// from the saver.
		select {
		case b := <-got:
			var v struct{ Responses []map[string]any }
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatalf("response not JSON: %v: %s", err, b)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no response")
		}
		select {
		case <-got:
			t.Fatal("two responses, want 1")
		case <-time.After(time.Millisecond):
		}
		d.mu.Lock()
		b, err := d.st.marshal()
		d.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parse(b); err != nil {
			t.Fatalf("the state does not read back: %v\n%s", err, b)
		}
	})
}

// TestAnswerAfterSave: a response that reports a change comes once the file
// holds it, and responses keep the order of their commands, as mosquitto
// answers after writing its file (its own tests stop the broker as soon as
// they have the answer, then read the change back).
func TestAnswerAfterSave(t *testing.T) {
	d := openString(t, initFile)
	got := make(chan string, 8)
	d.Publish = func(topic string, b []byte) {
		file, _ := os.ReadFile(d.path)
		got <- fmt.Sprintf("%s saved=%v", b, strings.Contains(string(file), `"username":	"u1"`) || strings.Contains(string(file), `"username": "u1"`))
	}
	admin := &session.ClientInfo{ClientID: "c", Username: "admin", HasUsername: true}
	d.Control(admin, Topic, []byte(`{"commands":[{"command":"createClient","username":"u1","correlationData":"1"}]}`))
	d.Control(admin, Topic, []byte(`{"commands":[{"command":"listClients","correlationData":"2"}]}`))
	for i, want := range []string{`"correlationData":"1"}]} saved=true`, `"correlationData":"2"}]} saved=true`} {
		select {
		case s := <-got:
			if !strings.HasSuffix(s, want) {
				t.Fatalf("response %d: %s, want …%s", i+1, s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("response %d did not come", i+1)
		}
	}
}

// TestListOrder: role and group lists are shown (and applied) by priority,
// highest first, then by name; a group's clients by name, as mosquitto
// keeps its lists (14-dynsec-role.py adds basic2 before basic).
func TestListOrder(t *testing.T) {
	d := openString(t, initFile)
	got := make(chan []byte, 8)
	d.Publish = func(topic string, b []byte) { got <- b }
	admin := &session.ClientInfo{ClientID: "c", Username: "admin", HasUsername: true}
	d.Control(admin, Topic, []byte(`{"commands":[
		{"command":"createClient","username":"zed"},{"command":"createClient","username":"amy"},
		{"command":"createRole","rolename":"basic2"},{"command":"createRole","rolename":"basic"},{"command":"createRole","rolename":"low"},{"command":"createRole","rolename":"high"},
		{"command":"createGroup","groupname":"g"},
		{"command":"addClientRole","username":"amy","rolename":"low","priority":-5},
		{"command":"addClientRole","username":"amy","rolename":"basic2"},
		{"command":"addClientRole","username":"amy","rolename":"basic"},
		{"command":"addClientRole","username":"amy","rolename":"high","priority":7},
		{"command":"addGroupClient","groupname":"g","username":"zed"},
		{"command":"addGroupClient","groupname":"g","username":"amy"},
		{"command":"getClient","username":"amy"},{"command":"getGroup","groupname":"g"}]}`))
	var v struct {
		Responses []struct {
			Error string
			Data  struct {
				Client struct{ Roles []struct{ Rolename string } }
				Group  struct{ Clients []struct{ Username string } }
			}
		}
	}
	select {
	case b := <-got:
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no response")
	}
	var roles, clients []string
	for _, r := range v.Responses {
		if r.Error != "" {
			t.Fatalf("error %q", r.Error)
		}
		for _, x := range r.Data.Client.Roles {
			roles = append(roles, x.Rolename)
		}
		for _, x := range r.Data.Group.Clients {
			clients = append(clients, x.Username)
		}
	}
	if got, want := strings.Join(roles, ","), "high,basic,basic2,low"; got != want {
		t.Errorf("client roles %s, want %s", got, want)
	}
	if got, want := strings.Join(clients, ","), "amy,zed"; got != want {
		t.Errorf("group clients %s, want %s", got, want)
	}
}
