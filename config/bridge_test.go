package config

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/midge-mqtt/midge/trie"
)

func TestBridgeDefaults(t *testing.T) {
	c, err := ParseReader("b.conf", strings.NewReader("connection edge\naddress 10.0.0.1\ntopic sensors/#\n"))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	b := c.Bridges[0]
	want := Bridge{Pos: Pos{"b.conf", 1}, Name: "edge", Addresses: []BridgeAddress{{"10.0.0.1", 1883}},
		Topics: []BridgeTopic{{Pattern: "sensors/#", Direction: "out"}}, ProtocolVersion: 4, KeepAlive: 60,
		StartType: "automatic", Threshold: 10, IdleTimeout: 60, RestartBase: 5, RestartCap: 30,
		Notifications: true, TryPrivate: true, AttemptUnsubscribe: true, OutgoingRetain: true,
		// mosquitto's code, not its man page: <hostname>.<name>.
		RemoteClientID: host + ".edge", LocalClientID: "local." + host + ".edge",
		NotificationTopic: "$SYS/broker/connection/" + host + ".edge/state"}
	b.clientIDAt, b.localIDAt = nil, nil
	if got := *b; !equalBridge(&got, &want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func equalBridge(a, b *Bridge) bool {
	if len(a.Addresses) != len(b.Addresses) || len(a.Topics) != len(b.Topics) {
		return false
	}
	for i := range a.Addresses {
		if a.Addresses[i] != b.Addresses[i] {
			return false
		}
	}
	for i := range a.Topics {
		if a.Topics[i] != b.Topics[i] {
			return false
		}
	}
	x, y := *a, *b
	x.Addresses, x.Topics, y.Addresses, y.Topics = nil, nil, nil, nil
	return reflect.DeepEqual(x, y)
}

func TestBridgeKeys(t *testing.T) {
	file := `connection a
addresses h1:1884 [::1]:1885 h3
round_robin true
topic # both 1 L/ R/
topic "" in 2 local/t remote/t
topic x in
bridge_protocol_version mqttv50
cleansession true
local_cleansession false
keepalive_interval 2
start_type lazy
threshold 5
idle_timeout 7
restart_timeout 20
notifications false
notifications_local_only true
notification_topic n/state
clientid rid
local_clientid lid
username ru
password rp
local_username lu
local_password lp
try_private false
bridge_attempt_unsubscribe false
bridge_outgoing_retain false
bridge_max_packet_size 1000
bridge_bind_address 127.0.0.1
bridge_cafile ca.pem
bridge_capath /etc/ssl
bridge_certfile c.pem
bridge_keyfile k.pem
bridge_insecure true
bridge_tls_version tlsv1.3
bridge_alpn mqtt
bridge_require_ocsp false
connection b
address h
topic t
restart_timeout 1 2
`
	c, err := ParseReader("b.conf", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Bridges[0]
	if len(a.Addresses) != 3 || a.Addresses[1] != (BridgeAddress{"::1", 1885}) || a.Addresses[2].Port != 1883 || !a.RoundRobin {
		t.Fatalf("addresses %+v", a.Addresses)
	}
	if a.Topics[0] != (BridgeTopic{"#", "both", 1, "L/", "R/"}) || a.Topics[1] != (BridgeTopic{"", "in", 2, "local/t", "remote/t"}) ||
		a.Topics[2] != (BridgeTopic{"x", "in", 0, "", ""}) {
		t.Fatalf("topics %+v", a.Topics)
	}
	if a.Topics[0].LocalTopic() != "L/#" || a.Topics[0].RemoteTopic() != "R/#" || !a.Topics[0].In() || !a.Topics[0].Out() {
		t.Fatal("topic mapping")
	}
	if a.ProtocolVersion != 5 || !a.CleanSession || a.LocalCleanSession || a.KeepAlive != 5 || a.StartType != "lazy" ||
		a.Threshold != 5 || a.IdleTimeout != 7 || a.RestartBase != 20 || a.RestartCap != 0 || a.Notifications ||
		!a.NotificationsLocalOnly || a.NotificationTopic != "n/state" || a.RemoteClientID != "rid" || a.LocalClientID != "lid" ||
		a.RemoteUsername != "ru" || a.RemotePassword != "rp" || a.LocalUsername != "lu" || a.LocalPassword != "lp" ||
		a.TryPrivate || a.AttemptUnsubscribe || a.OutgoingRetain || a.MaxPacketSize != 1000 || a.BindAddress != "127.0.0.1" ||
		a.CAFile != "ca.pem" || a.CAPath != "/etc/ssl" || a.CertFile != "c.pem" || a.KeyFile != "k.pem" || !a.Insecure ||
		a.TLSVersion != "tlsv1.3" || a.ALPN != "mqtt" || !a.TLS() {
		t.Fatalf("%+v", a)
	}
	b := c.Bridges[1]
	if b.RestartBase != 1 || b.RestartCap != 2 || !b.LocalCleanSession == b.CleanSession || b.Addresses[0].Host != "h" {
		t.Fatalf("%+v", b)
	}
}

func TestBridgeErrors(t *testing.T) {
	const head = "connection a\naddress h\n"
	cases := []struct{ file, want string }{
		{"address h\n", "b.conf:1: address: only valid inside a bridge"},
		{"connection a\ntopic x\n", "b.conf:1: connection: bridge \"a\" has no address"},
		{head, "b.conf:1: connection: bridge \"a\" has no topic"},
		{head + "topic x\nconnection a\n", "b.conf:4: connection: connection \"a\" is already defined at b.conf:1"},
		{head + "topic x\nconnection b\naddress h\ntopic x\nremote_clientid zz\nconnection c\naddress h\ntopic y\nlocal_clientid local.zz\n",
			"b.conf:11: local_clientid: \"local.zz\" is also the local client id of bridge \"b\""},
		{head + "restart_timeout 30 10\n", "b.conf:3: restart_timeout: the cap (10) is lower than the base (30)"},
		{head + "restart_timeout 0\n", "b.conf:3: restart_timeout: expected a positive number"},
		{head + "topic x out 3\n", "b.conf:3: topic: expected a QoS of 0, 1 or 2, got \"3\""},
		{head + "topic x out 1 L/+/ R/\n", "b.conf:3: topic: a prefix may not hold a wildcard"},
		{head + "topic x out 1 L/ R/#\n", "b.conf:3: topic: a prefix may not hold a wildcard"},
		{head + "topic \"\" out 1 L/\n", "b.conf:3: topic: an empty pattern needs both a local and a remote prefix"},
		{head + "topic \"\" out 1 \"\" R/\n", "b.conf:3: topic: an empty pattern needs both"},
		{head + "topic x sideways\n", "b.conf:3: topic: expected in, out or both"},
		{head + "topic a/#/b\n", "b.conf:3: topic: \"a/#/b\": "},
		{head + "address h2\n", "b.conf:3: address: this bridge already has its addresses"},
		{"connection a\naddress h:99999\n", "b.conf:2: address: invalid port in \"h:99999\""},
		{head + "bridge_protocol_version mqttv4\n", "b.conf:3: bridge_protocol_version: expected mqttv31, mqttv311 or mqttv50"},
		{head + "start_type manual\n", "b.conf:3: start_type: expected automatic, lazy or once"},
		{head + "bridge_psk 0011\n", "b.conf:3: bridge_psk: not supported by midge (TLS-PSK bridges)"},
		{head + "bridge_identity me\n", "b.conf:3: bridge_identity: not supported by midge"},
		{head + "bridge_require_ocsp true\n", "b.conf:3: bridge_require_ocsp: not supported by midge (OCSP)"},
		{head + "bridge_tls_version tlsv1.0\n", "b.conf:3: bridge_tls_version: expected tlsv1.3"},
		{head + "topic x\nbridge_certfile c\nbridge_cafile ca\n", "b.conf:1: connection: bridge_certfile and bridge_keyfile"},
		{head + "topic x\nbridge_insecure true\n", "b.conf:1: connection: bridge TLS settings need bridge_cafile"},
		{head + "topic x\nremote_password p\n", "b.conf:1: remote_password: needs remote_username"},
		{head + "try_private maybe\n", "b.conf:3: try_private: expected true or false"},
		{head + "bridge_bind_address eth0\n", "b.conf:3: bridge_bind_address: expected an IP address"},
		{head + "notification_topic a/#\n", "b.conf:3: notification_topic: expected a topic without wildcards"},
	}
	for _, tc := range cases {
		_, err := ParseReader("b.conf", strings.NewReader(tc.file))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.file, err, tc.want)
		}
	}
}

// FuzzBridgeConfig: whatever the `connection` blocks say, a parsed bridge
// has an address, topics whose two sides are valid filters, and a local
// client id of its own.
func FuzzBridgeConfig(f *testing.F) {
	f.Add("connection a\naddress h:1\ntopic # both 1 L/ R/\n")
	f.Add("connection a\naddresses h ::1:2\ntopic \"\" in 2 l r\nrestart_timeout 1 2\nconnection b\naddress h\ntopic x\n")
	f.Add("connection a\naddress h\ntopic x out 0 \"\" \"\"\nlocal_clientid z\nclientid y\n")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "include_dir") {
			return
		}
		c, err := ParseReader("f.conf", strings.NewReader(s))
		if err != nil {
			return
		}
		locals := map[string]bool{}
		for _, b := range c.Bridges {
			if len(b.Addresses) == 0 || len(b.Topics) == 0 || b.RemoteClientID == "" || locals[b.LocalClientID] {
				t.Fatalf("bad bridge %+v", b)
			}
			locals[b.LocalClientID] = true
			for _, tp := range b.Topics {
				for _, f := range []string{tp.LocalTopic(), tp.RemoteTopic()} {
					if err := trie.ValidFilter(f); err != nil {
						t.Fatalf("topic %+v: %q: %v", tp, f, err)
					}
				}
			}
			if b.RestartCap != 0 && b.RestartCap < b.RestartBase {
				t.Fatalf("restart_timeout %d %d", b.RestartBase, b.RestartCap)
			}
		}
	})
}
