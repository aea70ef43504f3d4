package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBridgeTLS: a bridge to a TLS listener that requires a client
// certificate, with bridge_cafile, bridge_certfile and bridge_keyfile (the
// remote's name, 127.0.0.1, is checked against its certificate).
func TestBridgeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	scrt, skey := ca.issue(t, "server")
	ccrt, ckey := ca.issue(t, "bridge-client")
	tlsPort := freePort(t)
	remote := newNode(t, "remote", fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
		tlsPort, filepath.Join(dir, "ca.crt"), scrt, skey), true)
	local := newNode(t, "local", fmt.Sprintf("connection tls\naddress 127.0.0.1:%d\nbridge_cafile %s\nbridge_certfile %s\nbridge_keyfile %s\n"+
		"bridge_tls_version tlsv1.2\ntopic t/# both 1\n", tlsPort, filepath.Join(dir, "ca.crt"), ccrt, ckey), true)
	local.waitBridgeUp("tls")
	rs, _ := remote.sink("rs", 1, "t/#")
	publish(t, local.publisher("lp"), "t/x", "secret", 1, false)
	rs.waitFor(t, "t/x secret 1")

	// Without the client certificate the remote refuses the bridge.
	other := newNode(t, "other", fmt.Sprintf("connection tls\naddress 127.0.0.1:%d\nbridge_cafile %s\nrestart_timeout 1\ntopic t/# out 1\n",
		tlsPort, filepath.Join(dir, "ca.crt")), true)
	other.waitLog("Bridge tls:", 10*time.Second)
	if c := other.out.String(); strings.Contains(c, "Bridge tls connected") {
		t.Fatalf("connected without a client certificate:\n%s", c)
	}
}

// TestBridgeCredentials: remote_username/remote_password against a remote
// with a password file, and local_username under the local ACL file: what
// the bridge brings in is checked as that user's publishes.
func TestBridgeCredentials(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	mosquittoPasswd(t, pw, true, "bridge", "s3cret")
	mosquittoPasswd(t, pw, false, "reader", "r")
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, "topic read in/#\ntopic read $SYS/#\nuser lb\ntopic write in/ok/#\n")
	remote := newNode(t, "remote", "", false)
	writeFile(t, remote.conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\nuser root\npassword_file %s\n", remote.port, pw))
	remote.start()
	local := newNode(t, "local", fmt.Sprintf("acl_file %s\nconnection cred\naddress %s\nremote_username bridge\nremote_password s3cret\n"+
		"local_username lb\ntopic in/# in 1\n", acl, remote.addr), true)
	local.waitBridgeUp("cred")
	ls, _ := local.sink("ls", 1, "in/#")
	mosquittoPub(t, "-h", "127.0.0.1", "-p", fmt.Sprint(remote.port), "-u", "reader", "-P", "r", "-q", "1", "-t", "in/no/1", "-m", "denied")
	mosquittoPub(t, "-h", "127.0.0.1", "-p", fmt.Sprint(remote.port), "-u", "reader", "-P", "r", "-q", "1", "-t", "in/ok/1", "-m", "allowed")
	ls.waitFor(t, "in/ok/1 allowed 1")
	time.Sleep(300 * time.Millisecond)
	sameSet(t, "local", ls.snapshot(), "in/ok/1 allowed 1")
}

// TestBridgeOutgoingRetain: bridge_outgoing_retain false clears the retain
// flag of everything sent to the remote.
func TestBridgeOutgoingRetain(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	local := newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nbridge_outgoing_retain false\ntopic r/# out 1\n", remote.addr), true)
	local.waitBridgeUp("ab")
	rs, _ := remote.sink("rs", 1, "r/#")
	publish(t, local.publisher("lp"), "r/1", "kept locally", 1, true)
	rs.waitFor(t, "r/1 kept locally 1")
	late, _ := remote.sink("late", 1, "r/#")
	time.Sleep(500 * time.Millisecond)
	if got := late.snapshot(); len(got) != 0 {
		t.Fatalf("the remote retained %q", got)
	}
}

// TestBridgeV5SessionExpiry: a v5 bridge with cleansession false and
// bridge_session_expiry_interval asks the remote to keep its session
// (mosquitto 2.0.11 sends no expiry, and a v5 remote then forgets what it
// should have queued): messages published on the remote while the local
// broker is down arrive after it restarts.
func TestBridgeV5SessionExpiry(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	local := newNode(t, "local", "", false)
	local.write(fmt.Sprintf("persistence true\npersistence_location %s\nconnection ab\naddress %s\nbridge_protocol_version mqttv50\n"+
		"cleansession false\nbridge_session_expiry_interval 4294967295\nrestart_timeout 1\ntopic in/# in 1\n", t.TempDir(), remote.addr))
	local.start()
	local.waitBridgeUp("ab")
	remote.waitLog(bridgeClientLog("ab")+"p5, c0", 5*time.Second)
	ls := pahoClient(t, local.addr, "ls", false, nil)
	waitToken(t, ls.Subscribe("in/#", 1, nil), "subscribe")
	ls.Disconnect(100)
	local.stop(syscall.SIGTERM)
	publish(t, remote.publisher("rp"), "in/while-down", "queued", 1, false)
	local.start()
	c := &collector{}
	ls = pahoClient(t, local.addr, "ls", false, c.handle)
	defer ls.Disconnect(0)
	c.waitFor(t, "in/while-down queued 1")
}

// TestBridgeQoS2BothWays: QoS 2 both ways at once (the bridge's two flows
// share its local client): every message arrives exactly once, at QoS 2.
func TestBridgeQoS2BothWays(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	local := newNode(t, "local", fmt.Sprintf("max_inflight_messages 4\nconnection ab\naddress %s\ntopic q2/# both 2\n", remote.addr), true)
	local.waitBridgeUp("ab")
	ls, _ := local.sink("ls", 2, "q2/#")
	rs, _ := remote.sink("rs", 2, "q2/#")
	lp, rp := local.publisher("lp"), remote.publisher("rp")
	var want []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100; i++ {
			rp.Publish(fmt.Sprintf("q2/r/%d", i), 2, false, "r").Wait()
		}
	}()
	for i := 0; i < 100; i++ {
		publish(t, lp, fmt.Sprintf("q2/l/%d", i), "l", 2, false)
		want = append(want, fmt.Sprintf("q2/l/%d l 2", i), fmt.Sprintf("q2/r/%d r 2", i))
	}
	<-done
	ls.waitCount(t, 200, 20*time.Second)
	rs.waitCount(t, 200, 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	sameSet(t, "local", ls.snapshot(), want...)
	sameSet(t, "remote", rs.snapshot(), want...)
}

// TestBridgeOverlappingTopics: two out lines matching the same topic, and a
// retained message resent on every reconnection: the remote gets each
// message once per connection, not once per topic line (mosquitto #2248).
func TestBridgeOverlappingTopics(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	local := newNode(t, "local", fmt.Sprintf("sys_interval 1\nconnection ab\naddress %s\nrestart_timeout 1\n"+
		"topic o/# out 1\ntopic o/x out 1\n", remote.addr), true)
	local.waitBridgeUp("ab")
	rs, _ := remote.sink("rs", 1, "o/#")
	lp := local.publisher("lp")
	publish(t, lp, "o/x", "kept", 1, true)
	publish(t, lp, "o/x", "live", 1, false)
	rs.waitCount(t, 2, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	sameSet(t, "remote", rs.snapshot(), "o/x kept 1", "o/x live 1")

	// Three reconnections: the retained message is sent once each time.
	connected := "Bridge ab connected to " + remote.addr
	for i := 0; i < 3; i++ {
		remote.stop(syscall.SIGTERM)
		remote.start()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(local.out.String(), connected) < i+2 {
			if time.Now().After(deadline) {
				t.Fatalf("no reconnection %d", i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	sent, _ := local.sink("sent", 0, "$SYS/broker/bridge/ab/messages/sent")
	sent.waitFor(t, "$SYS/broker/bridge/ab/messages/sent 5 0") // 2 + 3 resends
	time.Sleep(1500 * time.Millisecond)
	if got := sent.snapshot(); got[len(got)-1] != "$SYS/broker/bridge/ab/messages/sent 5 0" {
		t.Fatalf("messages sent: %q", got)
	}
}
