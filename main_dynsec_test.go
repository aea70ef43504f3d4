package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

const dynsecPlugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"

// brokerUnderTest is midge or mosquitto, started on its own port with the
// same mosquitto.conf.
type brokerUnderTest struct {
	name, addr, port, file string
	cmd                    *exec.Cmd
	out                    *lockedBuffer
}

func needDynsec(t *testing.T) {
	t.Helper()
	for _, f := range []string{"/usr/sbin/mosquitto", "/usr/bin/mosquitto_ctrl", dynsecPlugin} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s not found: run `make deps` (installs Debian's mosquitto and mosquitto-clients)", f)
		}
	}
}

// startDynsec starts who ("midge" or "mosquitto") with dynamic security on
// a copy of the file mosquitto_ctrl dynsec init made.
func startDynsec(t *testing.T, who, initFile, extra string) *brokerUnderTest {
	t.Helper()
	// mosquitto started as root runs as the user mosquitto: its directory
	// and file must be open to it.
	dir, err := os.MkdirTemp("", "dynsec-"+who)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	b := &brokerUnderTest{name: who, file: filepath.Join(dir, "dynsec.json")}
	data, err := os.ReadFile(initFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.file, data, 0o666); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(b.file, 0o666)
	port := freePort(t)
	b.port = strconv.Itoa(port)
	b.addr = "127.0.0.1:" + b.port
	conf := filepath.Join(dir, "mosquitto.conf")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nplugin %s\nplugin_opt_config_file %s\n%s",
		port, dynsecPlugin, b.file, extra))
	if who == "midge" {
		b.cmd, b.out = startMidge(t, b.addr, "-c", conf)
		return b
	}
	b.out = &lockedBuffer{}
	b.cmd = exec.Command("/usr/sbin/mosquitto", "-c", conf)
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopProcess(b.cmd, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", b.out.String())
		}
	})
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return b
}

// ctrl runs the real mosquitto_ctrl against b as the admin.
func (b *brokerUnderTest) ctrl(t *testing.T, args ...string) string {
	t.Helper()
	full := append([]string{"-h", "127.0.0.1", "-p", b.port, "-u", "admin", "-P", "adminpw", "dynsec"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "mosquitto_ctrl", full...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

// dial connects a client; it returns the CONNACK code (0: accepted).
func dial(t *testing.T, addr string, v byte, id, user, pass string, anonymous bool) (*client.Client, byte) {
	t.Helper()
	o := client.Options{Addr: addr, Version: v, ClientID: id, CleanStart: true}
	if !anonymous {
		o.Username, o.HasUsername, o.Password, o.HasPassword = user, true, []byte(pass), true
	}
	c := client.New(o)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Connect(ctx)
	var ce *client.ConnackError
	switch {
	case err == nil:
		t.Cleanup(func() { c.Close() })
		return c, 0
	case errors.As(err, &ce):
		return nil, ce.Code
	}
	t.Fatalf("connect %s: %v", id, err)
	return nil, 0
}

func subCode(t *testing.T, c *client.Client, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	codes, err := c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte(filter), QoS: 1})
	if err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return codes[0]
}

func unsubCode(t *testing.T, c *client.Client, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	codes, err := c.Unsubscribe(ctx, nil, []byte(filter))
	if err != nil {
		t.Fatalf("unsubscribe %s: %v", filter, err)
	}
	if len(codes) == 0 {
		return 0
	}
	return codes[0]
}

// pubCode publishes at QoS 1 and returns the PUBACK's reason (v5).
func pubCode(t *testing.T, c *client.Client, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Publish(ctx, &client.Message{Topic: []byte(topic), Payload: []byte("x"), QoS: 1})
	var ae *client.AckError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ae):
		return ae.Code
	}
	t.Fatalf("publish %s: %v", topic, err)
	return 0
}

// dynsecScript sets up the same clients, groups and roles on a broker with
// the real mosquitto_ctrl; it returns what each command printed.
func dynsecScript(t *testing.T, b *brokerUnderTest) []string {
	var out []string
	for _, cmd := range [][]string{
		{"createClient", "alice", "-p", "alicepw"},
		{"createClient", "bob", "-c", "bobid", "-p", "bobpw"},
		{"createClient", "carol", "-p", "carolpw"},
		{"createClient", "nopw"},
		{"disableClient", "carol"},
		{"createRole", "writer"},
		{"addRoleACL", "writer", "publishClientSend", "a/#", "allow", "5"},
		{"addRoleACL", "writer", "publishClientSend", "a/deny", "deny", "10"},
		{"addRoleACL", "writer", "subscribePattern", "a/#", "allow"},
		{"addRoleACL", "writer", "subscribeLiteral", "a/lit/+", "deny"},
		{"addRoleACL", "writer", "publishClientReceive", "a/hidden", "deny"},
		{"addRoleACL", "writer", "unsubscribeLiteral", "a/keep", "deny"},
		{"addClientRole", "alice", "writer"},
		{"createRole", "reader"},
		{"addRoleACL", "reader", "subscribeLiteral", "b/x", "allow"},
		{"createGroup", "readers"},
		{"addGroupRole", "readers", "reader", "3"},
		{"addGroupClient", "readers", "bob"},
		{"createGroup", "anon"},
		{"createRole", "anonrole"},
		{"addRoleACL", "anonrole", "publishClientSend", "public/#", "allow"},
		{"addGroupRole", "anon", "anonrole"},
		{"setAnonymousGroup", "anon"},
		// Evaluation order: the client's own roles, then its groups by
		// priority (highest first), then their roles.
		{"createRole", "denyb"},
		{"addRoleACL", "denyb", "publishClientSend", "b/#", "deny"},
		{"createRole", "allowb"},
		{"addRoleACL", "allowb", "publishClientSend", "b/#", "allow"},
		{"createRole", "bobown"},
		{"addRoleACL", "bobown", "publishClientSend", "b/own", "allow"},
		{"createGroup", "lo"},
		{"addGroupRole", "lo", "allowb"},
		{"addGroupClient", "lo", "bob", "1"},
		{"createGroup", "hi"},
		{"addGroupRole", "hi", "denyb"},
		{"addGroupClient", "hi", "bob", "10"},
		{"addClientRole", "bob", "bobown"},
		// Every other command of mosquitto_ctrl dynsec, with its errors.
		{"createClient", "eve", "-p", "evepw"},
		{"createClient", "alice", "-p", "x"},
		{"setClientPassword", "eve", "newpw"},
		{"setClientPassword", "nobody", "pw"},
		{"setClientId", "eve", "eveid"},
		{"getClient", "eve"},
		{"setClientId", "eve"},
		{"createRole", "tmp"},
		{"createRole", "tmp"},
		{"addRoleACL", "tmp", "publishClientSend", "x/#", "allow", "7"},
		{"addRoleACL", "tmp", "badType", "x/#", "allow"},
		{"addRoleACL", "nope", "publishClientSend", "x/#", "allow"},
		{"addClientRole", "eve", "tmp", "5"},
		{"addClientRole", "eve", "nope"},
		{"getClient", "eve"},
		{"removeClientRole", "eve", "tmp"},
		{"removeClientRole", "eve", "nope"},
		{"removeRoleACL", "tmp", "publishClientSend", "x/#"},
		{"removeRoleACL", "tmp", "publishClientSend", "x/#"},
		{"deleteRole", "tmp"},
		{"deleteRole", "tmp"},
		{"createGroup", "g2"},
		{"createGroup", "g2"},
		{"addGroupClient", "g2", "eve", "2"},
		{"addGroupClient", "g2", "nobody"},
		{"addGroupClient", "nogroup", "eve"},
		{"addGroupRole", "g2", "reader"},
		{"addGroupRole", "g2", "reader"},
		{"getGroup", "g2"},
		{"getClient", "eve"},
		{"removeGroupClient", "g2", "eve"},
		{"removeGroupRole", "g2", "reader"},
		{"removeGroupRole", "g2", "nope"},
		{"deleteGroup", "g2"},
		{"deleteGroup", "g2"},
		{"getGroup", "g2"},
		{"setAnonymousGroup", "nogroup"},
		{"setDefaultACLAccess", "publishClientReceive", "deny"},
		{"getDefaultACLAccess"},
		{"setDefaultACLAccess", "publishClientReceive", "allow"},
		{"enableClient", "carol"},
		{"disableClient", "carol"},
		{"enableClient", "nobody"},
		{"deleteClient", "eve"},
		{"deleteClient", "eve"},
		{"getClient", "eve"},
		{"listClients", "2", "1"},
		{"listGroups", "1"},
		{"listRoles", "2", "2"},
		{"getRole", "nope"},
		{"addRoleACL", "writer", "publishClientSend", "a/#", "allow"},
		{"getClient", "nobody"},
		{"addGroupClient", "readers", "bob"},
	} {
		out = append(out, strings.Join(cmd, " ")+" -> "+b.ctrl(t, cmd...))
	}
	for _, cmd := range [][]string{
		{"getClient", "alice"}, {"getClient", "bob"}, {"getClient", "carol"}, {"getRole", "writer"},
		{"getGroup", "readers"}, {"listClients"}, {"listGroups"}, {"listRoles"},
		{"getAnonymousGroup"}, {"getDefaultACLAccess"},
	} {
		out = append(out, strings.Join(cmd, " ")+" -> "+b.ctrl(t, cmd...))
	}
	return out
}

// dynsecDecisions asks the broker everything the script's rules decide.
func dynsecDecisions(t *testing.T, b *brokerUnderTest) map[string]string {
	d := map[string]string{}
	for _, v := range []byte{codec.Version311, codec.Version5} {
		p := fmt.Sprintf("v%d ", v)
		for _, c := range []struct{ id, user, pass string }{
			{"a1", "alice", "alicepw"}, {"a2", "alice", "wrong"}, {"bobid", "bob", "bobpw"},
			{"other", "bob", "bobpw"}, {"c1", "carol", "carolpw"}, {"d1", "dave", "x"}, {"n1", "nopw", "x"},
		} {
			_, code := dial(t, b.addr, v, c.id, c.user, c.pass, false)
			d[p+"connect "+c.user+"/"+c.pass+"/"+c.id] = strconv.Itoa(int(code))
		}
		_, code := dial(t, b.addr, v, "anon1", "", "", true)
		d[p+"connect anonymous"] = strconv.Itoa(int(code))

		alice, code := dial(t, b.addr, v, "alice-"+p[:2], "alice", "alicepw", false)
		if alice == nil {
			t.Fatalf("%s: alice refused (%d)", b.name, code)
		}
		var mu sync.Mutex
		var got []string
		alice.OnMessage = func(m *client.Message) {
			mu.Lock()
			got = append(got, string(m.Topic))
			mu.Unlock()
		}
		for _, f := range []string{"a/#", "a/b", "a/lit/x", "a/lit/+", "a/+/y", "b/x", "#", "$CONTROL/dynamic-security/v1"} {
			d[p+"alice subscribe "+f] = strconv.Itoa(int(subCode(t, alice, f)))
		}
		for _, f := range []string{"a/keep", "a/b", "zzz"} {
			d[p+"alice unsubscribe "+f] = strconv.Itoa(int(unsubCode(t, alice, f)))
		}
		for _, topic := range []string{"a/1", "a/deny", "a/hidden", "c", "$SYS/x", "$CONTROL/x", "a/done"} {
			d[p+"alice publish "+topic] = strconv.Itoa(int(pubCode(t, alice, topic)))
		}
		waitFor(t, func() bool { // a/done is the last one alice may receive
			mu.Lock()
			defer mu.Unlock()
			return len(got) > 0 && got[len(got)-1] == "a/done"
		})
		mu.Lock()
		sort.Strings(got)
		d[p+"alice received"] = strings.Join(got, " ")
		mu.Unlock()

		bob, _ := dial(t, b.addr, v, "bobid", "bob", "bobpw", false)
		for _, f := range []string{"b/x", "b/y", "a/#"} {
			d[p+"bob subscribe "+f] = strconv.Itoa(int(subCode(t, bob, f)))
		}
		for _, topic := range []string{"b/x", "b/own", "c"} {
			d[p+"bob publish "+topic] = strconv.Itoa(int(pubCode(t, bob, topic)))
		}
		anon, _ := dial(t, b.addr, v, "anon2", "", "", true)
		for _, topic := range []string{"public/1", "private"} {
			d[p+"anonymous publish "+topic] = strconv.Itoa(int(pubCode(t, anon, topic)))
		}
		d[p+"anonymous subscribe public/#"] = strconv.Itoa(int(subCode(t, anon, "public/#")))
	}
	return d
}

// TestDynsecSideBySide drives midge and mosquitto with its real dynamic
// security plugin through the same mosquitto_ctrl commands, from the same
// `mosquitto_ctrl dynsec init` file, and compares what mosquitto_ctrl prints
// and every decision: CONNACK, SUBACK, UNSUBACK and PUBACK codes at 3.1.1
// and 5.0, and which messages are delivered.
func TestDynsecSideBySide(t *testing.T) {
	needDynsec(t)
	initFile := filepath.Join(t.TempDir(), "init.json")
	if out, err := exec.Command("mosquitto_ctrl", "dynsec", "init", initFile, "admin", "adminpw").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_ctrl dynsec init: %v %s", err, out)
	}
	results := map[string]map[string]string{}
	scripts := map[string][]string{}
	for _, who := range []string{"mosquitto", "midge"} {
		b := startDynsec(t, who, initFile, "")
		scripts[who] = dynsecScript(t, b)
		if testing.Verbose() {
			t.Logf("%s:\n%s", who, strings.Join(scripts[who], "\n"))
		}
		results[who] = dynsecDecisions(t, b)
	}
	for i := range scripts["mosquitto"] {
		if m, g := scripts["mosquitto"][i], scripts["midge"][i]; m != g {
			t.Errorf("mosquitto_ctrl printed differently:\nmosquitto: %s\nmidge:     %s", m, g)
		}
	}
	var keys []string
	for k := range results["mosquitto"] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if m, g := results["mosquitto"][k], results["midge"][k]; m != g {
			t.Errorf("%s: mosquitto %s, midge %s", k, m, g)
		}
	}
	// The comparison holds only if the rules decided something.
	want := map[string]string{
		"v5 connect alice/alicepw/a1": "0", "v5 connect alice/wrong/a2": "135", "v4 connect alice/wrong/a2": "5",
		"v5 connect bob/bobpw/other": "135", "v5 connect carol/carolpw/c1": "135", "v5 connect dave/x/d1": "135",
		"v5 alice subscribe a/lit/+": "135", "v5 alice subscribe a/lit/x": "1", "v4 alice subscribe b/x": "128", "v5 alice publish a/deny": "135",
		"v5 alice publish a/1": "0", "v5 alice received": "a/1 a/done", "v5 anonymous publish private": "135",
		"v5 alice unsubscribe a/keep": "135", "v5 alice publish $CONTROL/x": "135",
		"v5 bob publish b/x": "135", "v5 bob publish b/own": "0",
	}
	for k, v := range want {
		if got := results["midge"][k]; got != v {
			t.Errorf("midge %s = %s, want %s", k, got, v)
		}
	}
}

// TestDynsecChangesApplyAtOnce: a change made with mosquitto_ctrl
// disconnects the clients it concerns (as mosquitto does), the next
// connection gets the new rules, and the file is saved (replaced whole) so
// that a restarted midge starts from it. mosquitto runs the same steps.
func TestDynsecChangesApplyAtOnce(t *testing.T) {
	needDynsec(t)
	initFile := filepath.Join(t.TempDir(), "init.json")
	if out, err := exec.Command("mosquitto_ctrl", "dynsec", "init", initFile, "admin", "adminpw").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_ctrl dynsec init: %v %s", err, out)
	}
	results := map[string][]string{}
	var midge *brokerUnderTest
	for _, who := range []string{"mosquitto", "midge"} {
		b := startDynsec(t, who, initFile, "")
		var r []string
		for _, cmd := range [][]string{
			{"createClient", "alice", "-p", "alicepw"}, {"createRole", "w"},
			{"addRoleACL", "w", "publishClientSend", "t/#", "allow"}, {"addClientRole", "alice", "w"},
			{"createClient", "watcher", "-p", "wpw"}, {"createRole", "watch"},
			{"addRoleACL", "watch", "subscribePattern", "#", "allow"}, {"addClientRole", "watcher", "watch"},
		} {
			b.ctrl(t, cmd...)
		}
		// The watcher would see alice's will: a kick by dynsec drops it.
		watcher, _ := dial(t, b.addr, codec.Version5, "watcher1", "watcher", "wpw", false)
		wills := make(chan string, 4)
		watcher.OnMessage = func(m *client.Message) { wills <- string(m.Topic) }
		subCode(t, watcher, "t/will")
		o := client.Options{Addr: b.addr, Version: codec.Version5, ClientID: "alice1", CleanStart: true,
			Username: "alice", HasUsername: true, Password: []byte("alicepw"), HasPassword: true,
			Will: &client.Message{Topic: []byte("t/will"), Payload: []byte("gone")}}
		alice := client.New(o)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := alice.Connect(ctx); err != nil {
			t.Fatalf("%s: alice: %v", who, err)
		}
		cancel()
		r = append(r, "publish t/1 "+strconv.Itoa(int(pubCode(t, alice, "t/1"))))
		b.ctrl(t, "removeRoleACL", "w", "publishClientSend", "t/#")
		select {
		case <-alice.Done():
			r = append(r, "alice disconnected")
		case <-time.After(5 * time.Second):
			r = append(r, "alice still connected")
		}
		select {
		case topic := <-wills:
			r = append(r, "will on "+topic)
		case <-time.After(time.Second):
			r = append(r, "no will")
		}
		alice, _ = dial(t, b.addr, codec.Version5, "alice1", "alice", "alicepw", false)
		r = append(r, "publish t/1 "+strconv.Itoa(int(pubCode(t, alice, "t/1"))))
		b.ctrl(t, "disableClient", "alice")
		select {
		case <-alice.Done():
			r = append(r, "alice disconnected")
		case <-time.After(5 * time.Second):
			r = append(r, "alice still connected")
		}
		_, code := dial(t, b.addr, codec.Version5, "alice1", "alice", "alicepw", false)
		r = append(r, "connect "+strconv.Itoa(int(code)))
		results[who] = r
		midge = b
	}
	if m, g := strings.Join(results["mosquitto"], ", "), strings.Join(results["midge"], ", "); m != g {
		t.Fatalf("mosquitto: %s\nmidge:     %s", m, g)
	}
	if want := "publish t/1 0, alice disconnected, no will, publish t/1 135, alice disconnected, connect 135"; strings.Join(results["midge"], ", ") != want {
		t.Fatalf("midge: %v, want %s", results["midge"], want)
	}

	// The file was replaced whole (nothing left beside it), and a new
	// midge starts from it: alice stays disabled, the admin still works.
	waitFor(t, func() bool {
		b, err := os.ReadFile(midge.file)
		return err == nil && strings.Contains(string(b), `"disabled": true`)
	})
	entries, _ := os.ReadDir(filepath.Dir(midge.file))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".new") {
			t.Errorf("left beside the file: %s", e.Name())
		}
	}
	if !stopProcess(midge.cmd, syscall.SIGTERM) {
		t.Fatal("midge did not stop")
	}
	conf := filepath.Join(filepath.Dir(midge.file), "mosquitto.conf")
	startMidge(t, midge.addr, "-c", conf)
	if _, code := dial(t, midge.addr, codec.Version5, "alice1", "alice", "alicepw", false); code != codec.NotAuthorized {
		t.Fatalf("alice after restart: %d, want 135", code)
	}
	if out := midge.ctrl(t, "getClient", "alice"); !strings.Contains(out, "Disabled: true") {
		t.Fatalf("getClient after restart: %s", out)
	}
}

// TestDynsecJSONSideBySide sends the commands mosquitto_ctrl 2.0 has no
// verb for (modifyClient, modifyGroup, modifyRole, verbose lists: what
// management UIs use) as raw JSON to both brokers and compares the
// responses, field by field.
func TestDynsecJSONSideBySide(t *testing.T) {
	needDynsec(t)
	initFile := filepath.Join(t.TempDir(), "init.json")
	if out, err := exec.Command("mosquitto_ctrl", "dynsec", "init", initFile, "admin", "adminpw").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_ctrl dynsec init: %v %s", err, out)
	}
	cmds := []string{
		`{"command":"createRole","rolename":"r1","textname":"Role one","textdescription":"first","acls":[{"acltype":"publishClientSend","topic":"a/#","priority":3,"allow":true},{"acltype":"subscribeLiteral","topic":"a/b","allow":false}]}`,
		`{"command":"createRole","rolename":"r2"}`,
		`{"command":"createGroup","groupname":"g1","textname":"Group one","roles":[{"rolename":"r2","priority":4}]}`,
		`{"command":"createClient","username":"u1","password":"p1","clientid":"c1","textname":"User","textdescription":"desc","roles":[{"rolename":"r1","priority":2}],"groups":[{"groupname":"g1","priority":9}],"correlationData":"abc"}`,
		`{"command":"createClient","username":"u2","roles":[{"rolename":"missing"}]}`,
		`{"command":"createClient","username":"u3","groups":[{"groupname":"missing"}]}`,
		`{"command":"getClient","username":"u1"}`,
		`{"command":"modifyClient","username":"u1","textname":"Renamed","clientid":"","roles":[{"rolename":"r2"}],"groups":[]}`,
		`{"command":"getClient","username":"u1"}`,
		`{"command":"modifyClient","username":"nobody"}`,
		`{"command":"modifyGroup","groupname":"g1","textdescription":"d","roles":[{"rolename":"r1","priority":1}]}`,
		`{"command":"getGroup","groupname":"g1"}`,
		`{"command":"modifyRole","rolename":"r2","textname":"Two","acls":[{"acltype":"unsubscribePattern","topic":"x/+","priority":1,"allow":true}]}`,
		`{"command":"modifyRole","rolename":"nope"}`,
		`{"command":"getRole","rolename":"r2"}`,
		`{"command":"listClients","verbose":true}`,
		`{"command":"listGroups","verbose":true,"count":1}`,
		`{"command":"listRoles","verbose":true,"offset":1}`,
		`{"command":"getAnonymousGroup"}`,
		`{"command":"createClient"}`,
		`{"command":"frobnicate","correlationData":"z"}`,
		`{"nocommand":true}`,
	}
	results := map[string][]string{}
	for _, who := range []string{"mosquitto", "midge"} {
		b := startDynsec(t, who, initFile, "")
		admin, code := dial(t, b.addr, codec.Version5, "admin-json", "admin", "adminpw", false)
		if admin == nil {
			t.Fatalf("%s: admin refused (%d)", who, code)
		}
		got := make(chan string, len(cmds))
		admin.OnMessage = func(m *client.Message) { got <- string(m.Payload) }
		// Subscribed to the command topic too: commands are never routed
		// (an echo would be read as a response and differ).
		for _, f := range []string{"$CONTROL/dynamic-security/v1/response", "$CONTROL/dynamic-security/v1"} {
			if c := subCode(t, admin, f); c > 2 {
				t.Fatalf("%s: subscribe %s %#x", who, f, c)
			}
		}
		for _, cmd := range cmds {
			results[who] = append(results[who], askDynsec(t, admin, got, who, `{"commands":[`+cmd+`]}`))
		}
	}
	for i, cmd := range cmds {
		if m, g := results["mosquitto"][i], results["midge"][i]; m != g {
			t.Errorf("%s:\nmosquitto: %s\nmidge:     %s", cmd, m, g)
		}
	}
}

// normalJSON re-encodes a JSON document with sorted keys.
func normalJSON(t *testing.T, s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("response %q: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestMidgeCtrl: `midge ctrl` prints what the real mosquitto_ctrl prints for
// every dynsec command (stdout, and the broker's errors), and the file
// `midge ctrl dynsec init` writes is accepted by mosquitto's real plugin.
func TestMidgeCtrl(t *testing.T) {
	needDynsec(t)
	initFile := filepath.Join(t.TempDir(), "init.json")
	if out, err := exec.Command(midgeBin, "ctrl", "dynsec", "init", initFile, "admin", "adminpw").CombinedOutput(); err != nil {
		t.Fatalf("midge ctrl dynsec init: %v %s", err, out)
	}
	for _, who := range []string{"mosquitto", "midge"} {
		// Two brokers alike: one administered by each tool.
		bReal, bOurs := startDynsec(t, who, initFile, ""), startDynsec(t, who, initFile, "")
		script := [][]string{
			{"createClient", "alice", "-c", "aid", "-p", "pw"}, {"createRole", "r"},
			{"addRoleACL", "r", "publishClientSend", "a/#", "allow", "4"},
			{"addRoleACL", "r", "subscribeLiteral", "a/b", "deny"},
			{"addClientRole", "alice", "r", "2"}, {"createGroup", "g"}, {"addGroupRole", "g", "r"},
			// (here, setAnonymousGroup on the group holding alice made both
			// mosquitto 2.0.11 brokers exit, whichever tool sent it: the
			// anonymous group is an empty one.)
			{"addGroupClient", "g", "alice", "3"}, {"createGroup", "anon"}, {"setAnonymousGroup", "anon"},
			{"disableClient", "alice"},
			{"getClient", "alice"}, {"getGroup", "g"}, {"getRole", "r"}, {"getRole", "admin"},
			{"listClients"}, {"listGroups"}, {"listRoles", "1", "1"}, {"getAnonymousGroup"},
			{"getDefaultACLAccess"},
			{"getClient", "nobody"}, {"createRole", "r"}, {"removeRoleACL", "r", "publishClientSend", "x"},
			{"setClientId", "alice"}, {"setClientPassword", "alice", "pw2"}, {"enableClient", "alice"},
			{"removeGroupClient", "g", "alice"}, {"removeGroupRole", "g", "r"}, {"removeClientRole", "alice", "r"},
			{"deleteGroup", "g"}, {"deleteRole", "r"}, {"deleteClient", "alice"}, {"listClients"},
		}
		for _, cmd := range script {
			run := func(b *brokerUnderTest, bin string, pre ...string) string {
				args := append(append(pre, "-h", "127.0.0.1", "-p", b.port, "-u", "admin", "-P", "adminpw", "dynsec"), cmd...)
				c := exec.Command(bin, args...)
				var stdout, stderr strings.Builder
				c.Stdout, c.Stderr = &stdout, &stderr
				_ = c.Run()
				out := stdout.String()
				for _, l := range strings.Split(stderr.String(), "\n") {
					if strings.Contains(l, ": Error: ") {
						out += l + "\n"
					}
				}
				return out
			}
			real, ours := run(bReal, "mosquitto_ctrl"), run(bOurs, midgeBin, "ctrl")
			if cmd[0] == "listClients" && !strings.Contains(ours, "admin\n") {
				t.Errorf("%s %v: the admin could not list clients: %q", who, cmd, ours)
			}
			if real != ours {
				t.Errorf("%s %v:\nmosquitto_ctrl: %q\nmidge ctrl:     %q", who, cmd, real, ours)
			}
		}
		// mosquitto_ctrl 2.0.11 sends setDefaultACLAccess as "access":
		// "allow", which the plugin (and midge, alike) ignores; midge ctrl
		// sends "allow": true, which both apply.
		out, err := exec.Command(midgeBin, "ctrl", "-p", bOurs.port, "-u", "admin", "-P", "adminpw",
			"dynsec", "setDefaultACLAccess", "subscribe", "allow").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v %s", who, err, out)
		}
		if got := bOurs.ctrl(t, "getDefaultACLAccess"); !strings.Contains(got, "subscribe            : allow") {
			t.Errorf("%s: setDefaultACLAccess by midge ctrl not applied:\n%s", who, got)
		}
	}
}

// TestDynsecInvalidSideBySide sends malformed command payloads and names
// that MQTT cannot carry (a non-character, a control character) to both
// brokers and compares the responses: mosquitto's tests
// 14-dynsec-plugin-invalid and 14-dynsec-*-invalid check these words.
func TestDynsecInvalidSideBySide(t *testing.T) {
	needDynsec(t)
	initFile := filepath.Join(t.TempDir(), "init.json")
	if out, err := exec.Command("mosquitto_ctrl", "dynsec", "init", initFile, "admin", "adminpw").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_ctrl dynsec init: %v %s", err, out)
	}
	payloads := []string{
		`not json`,
		`"not json"`,
		`{}`,
		`{"commands":"test"}`,
		`{"commands":[]}`,
		`{"commands":["bad"]}`,
		`{"commands":[{"command":6}]}`,
		`{"commands":[{"command":"createClient","username":"\uffffLO"}]}`,
		`{"commands":[{"command":"createClient","username":"u","clientid":"\uffffLO"}]}`,
		`{"commands":[{"command":"getClient","username":"a\u0001b"}]}`,
		`{"commands":[{"command":"createGroup","groupname":"\ufdd0"}]}`,
		`{"commands":[{"command":"createRole","rolename":"\uffffLO"}]}`,
		`{"commands":[{"command":"createRole","rolename":"ok-role"}]}`,
		`{"commands":[{"command":"addRoleACL","rolename":"ok-role","acltype":"publishClientSend","topic":"\uffffLO"}]}`,
		`{"commands":[{"command":"addGroupClient","groupname":"g","username":"\u0085"}]}`,
	}
	results := map[string][]string{}
	for _, who := range []string{"mosquitto", "midge"} {
		b := startDynsec(t, who, initFile, "")
		admin, code := dial(t, b.addr, codec.Version5, "admin-invalid", "admin", "adminpw", false)
		if admin == nil {
			t.Fatalf("%s: admin refused (%d)", who, code)
		}
		got := make(chan string, len(payloads))
		admin.OnMessage = func(m *client.Message) { got <- string(m.Payload) }
		if c := subCode(t, admin, "$CONTROL/dynamic-security/v1/response"); c > 2 {
			t.Fatalf("%s: subscribe %#x", who, c)
		}
		for _, pl := range payloads {
			results[who] = append(results[who], askDynsec(t, admin, got, who, pl))
		}
	}
	for i, pl := range payloads {
		if m, g := results["mosquitto"][i], results["midge"][i]; m != g {
			t.Errorf("%s:\nmosquitto: %s\nmidge:     %s", pl, m, g)
		}
	}
}

// askDynsec publishes payload to the dynsec control topic as admin and
// returns the response that arrives on got, normalised (normalJSON).
func askDynsec(t *testing.T, admin *client.Client, got <-chan string, who, payload string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := admin.Publish(ctx, &client.Message{Topic: []byte("$CONTROL/dynamic-security/v1"), Payload: []byte(payload), QoS: 1})
	cancel()
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	select {
	case r := <-got:
		return normalJSON(t, r)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no response to %s", who, payload)
	}
	return ""
}
