package dynsec

import (
	"io"
	"log"
	"strings"
	"testing"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

type quietTransport struct{}

func (quietTransport) Wake()              {}
func (quietTransport) Close()             {}
func (quietTransport) RemoteAddr() string { return "bench" }

const benchRules = `{"roles":[{"rolename":"r","acls":[
 {"acltype":"publishClientSend","topic":"fleet/#","allow":true},
 {"acltype":"publishClientReceive","topic":"fleet/#","allow":true},
 {"acltype":"subscribePattern","topic":"fleet/#","allow":true}]}],
 "clients":[{"username":"u","encoded_password":"ENC","roles":[{"rolename":"r"}]}]}`

// publishPath is a broker with two subscribers and a publisher, all
// logged in as a dynsec client (or with no auth at all), and one QoS 0
// PUBLISH taken through Handle and both subscribers' Drain.
func publishPath(tb testing.TB, withDynsec bool) func() {
	o := session.DefaultOptions()
	o.Logger, o.ConnectionMessages = log.New(io.Discard, "", 0), false
	if withDynsec {
		enc, err := auth.HashPasswordWith(auth.SHA512PBKDF2, 1, []byte("pw"))
		if err != nil {
			tb.Fatal(err)
		}
		o.Auth = auth.New(false, nil, openString(tb, strings.Replace(benchRules, "ENC", enc, 1)))
	}
	b := session.NewBroker(o)
	var out session.Output
	connect := func(id, filter string) *session.Client {
		c := b.NewClient(quietTransport{}, nil)
		var p codec.Packet
		p.Type = codec.CONNECT
		p.Connect = codec.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: codec.Version311, CleanStart: true,
			ClientID: []byte(id), Username: []byte("u"), UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true}
		if err := c.Handle(&p, &out); err != nil || !c.Connected() {
			tb.Fatalf("connect %s: %v", id, err)
		}
		if filter != "" {
			p.Reset()
			p.Type, p.PacketID = codec.SUBSCRIBE, 1
			p.Subscriptions = append(p.Subscriptions, codec.Subscription{Filter: []byte(filter)})
			if err := c.Handle(&p, &out); err != nil {
				tb.Fatal(err)
			}
		}
		out.Done()
		return c
	}
	subs := []*session.Client{connect("s1", "fleet/+/t"), connect("s2", "fleet/#")}
	pub := connect("p", "")
	var p codec.Packet
	p.Type, p.Topic, p.Payload = codec.PUBLISH, []byte("fleet/site42/t"), make([]byte, 64)
	return func() {
		_ = pub.Handle(&p, &out)
		out.Done()
		for _, s := range subs {
			_, _ = s.Drain(&out, 1<<20)
			if out.Len() == 0 {
				tb.Fatal("nothing delivered")
			}
			out.Done()
		}
	}
}

// TestPublishPathAllocsWithDynsec: with dynamic security deciding every
// publish and every delivery, the publish path still allocates nothing.
func TestPublishPathAllocsWithDynsec(t *testing.T) {
	run := publishPath(t, true)
	for i := 0; i < 100; i++ {
		run()
	}
	if n := testing.AllocsPerRun(1000, run); n > 0 {
		t.Fatalf("publish path with dynsec allocates %.1f times per message, want 0", n)
	}
}

// BenchmarkPublishPath: one publish to two subscribers without auth and
// with dynsec's checks (one send check, two receive checks).
func BenchmarkPublishPath(b *testing.B) {
	for _, tc := range []struct {
		name string
		on   bool
	}{{"noauth", false}, {"dynsec", true}} {
		b.Run(tc.name, func(b *testing.B) {
			run := publishPath(b, tc.on)
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}
