package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// newRemote makes the client of the remote broker for one connection
// attempt. A client is made per connection and takes the last one's session
// (TakeSession): what was in flight to the remote is resent by it, under its
// ids; the local session's copies of those messages are not forwarded
// (sentTable).
func (br *Bridge) newRemote(addr string) *client.Client {
	c := br.cfg
	o := client.Options{Addr: addr, Version: br.version, ClientID: c.RemoteClientID,
		CleanStart: c.CleanSession, KeepAlive: uint16(c.KeepAlive),
		Username: c.RemoteUsername, HasUsername: c.HasRemoteUser,
		Bridge:      br.tryPrivate && br.version != codec.Version5,
		MaxInflight: min(br.broker.Options().MaxInflight, 1000),
		// A message brought in is acknowledged to the remote once the local
		// broker has stored it (inbound.receive, local.ackStored).
		ManualAck: true,
		// What was in flight is resent after the subscriptions (serve).
		DeferResend: true,
		// From here until the local side is online (or the attempt fails),
		// QoS 0 messages for the remote are kept, as mosquitto does once
		// its bridge's socket is up.
		Dialed: func() { br.broker.Connecting(c.LocalClientID, true) }}
	if c.HasRemotePass {
		o.Password, o.HasPassword = []byte(c.RemotePassword), true
	}
	if c.BindAddress != "" {
		o.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.BindAddress)}
	}
	if c.TLS() {
		o.TLS = br.tlsConfig(addr)
	}
	if c.Notifications && !c.NotificationsLocalOnly {
		o.Will = &client.Message{Topic: []byte(c.NotificationTopic), Payload: stateBytes(false), QoS: 1, Retain: true}
	}
	if br.version == codec.Version5 {
		// As mosquitto: the receive maximum is max_inflight_messages (none
		// is sent when it is 65,535, the protocol's default).
		if n := br.broker.Options().MaxInflight; n > 0 && n < math.MaxUint16 {
			o.Props.ReceiveMaximum = uint16(n)
			o.Props.Set(codec.PropReceiveMaximum)
		}
		// bridge_session_expiry_interval: the remote keeps the bridge's
		// subscriptions and queue while it is away. Not sent by default,
		// as by mosquitto 2.0.11 (and a v5 remote then drops them).
		if c.SessionExpiry > 0 {
			o.Props.SessionExpiry = c.SessionExpiry
			o.Props.Set(codec.PropSessionExpiry)
		}
	}
	rc := client.New(o)
	if br.prev != nil {
		rc.TakeSession(br.prev)
	}
	br.prev = rc
	f := &inbound{br: br, rc: rc}
	rc.OnMessage = f.receive
	rc.OnRelease = func(id uint16) { br.local.release(rc, id) }
	return rc
}

// tlsConfig is the bridge's TLS settings; errors in files were found when
// the bridge was made (CheckTLS), so here they only log.
func (br *Bridge) tlsConfig(addr string) *tls.Config {
	tc, err := buildTLS(br.cfg.CAFile, br.cfg.CAPath, br.cfg.CertFile, br.cfg.KeyFile, br.cfg.TLSVersion, br.cfg.ALPN, br.cfg.Insecure)
	if err != nil {
		br.log.Printf("Bridge %s: %v", br.cfg.Name, err)
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	host, _, _ := net.SplitHostPort(addr)
	tc.ServerName = host
	return tc
}

// buildTLS turns mosquitto's bridge_* TLS keys into a tls.Config.
func buildTLS(cafile, capath, certfile, keyfile, version, alpn string, insecure bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch version {
	case "tlsv1.1":
		tc.MinVersion = tls.VersionTLS11
	case "tlsv1.3":
		tc.MinVersion = tls.VersionTLS13
	}
	pool := x509.NewCertPool()
	var files []string
	if cafile != "" {
		files = append(files, cafile)
	}
	if capath != "" {
		entries, err := os.ReadDir(capath)
		if err != nil {
			return nil, fmt.Errorf("bridge_capath: %w", err)
		}
		for _, e := range entries {
			if n := e.Name(); strings.HasSuffix(n, ".crt") || strings.HasSuffix(n, ".pem") {
				files = append(files, filepath.Join(capath, n))
			}
		}
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("bridge CA: %w", err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	tc.RootCAs = pool
	if certfile != "" {
		pair, err := tls.LoadX509KeyPair(certfile, keyfile)
		if err != nil {
			return nil, fmt.Errorf("bridge_certfile/bridge_keyfile: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if alpn != "" {
		tc.NextProtos = []string{alpn}
	}
	if insecure {
		// bridge_insecure skips the host name check only: the chain is
		// still verified against the CAs.
		tc.InsecureSkipVerify = true
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			if len(certs) == 0 {
				return errors.New("no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		}
	}
	return tc, nil
}

// CheckTLS reports an error in a bridge's TLS files, so that the broker
// refuses to start rather than fail at every connection.
func CheckTLS(b *Bridge) error {
	c := b.cfg
	if !c.TLS() {
		return nil
	}
	_, err := buildTLS(c.CAFile, c.CAPath, c.CertFile, c.KeyFile, c.TLSVersion, c.ALPN, c.Insecure)
	if err != nil {
		return fmt.Errorf("%s: connection %s: %w", c.Pos, c.Name, err)
	}
	return nil
}

// subscribeRemote subscribes to the in topics on the remote (no-local and
// retain-as-published on v5, so nothing the bridge sends comes back) and,
// with bridge_attempt_unsubscribe, unsubscribes the out-only ones that an
// earlier configuration may have left in the remote session.
func (br *Bridge) subscribeRemote(rc *client.Client) error {
	ctx, cancel := context.WithTimeout(br.ctx, br.connectTimeout())
	defer cancel()
	v5 := br.version == codec.Version5
	for i := range br.cfg.Topics {
		t := &br.cfg.Topics[i]
		switch {
		case t.In():
			codes, err := rc.Subscribe(ctx, nil, codec.Subscription{Filter: []byte(t.RemoteTopic()), QoS: t.QoS,
				NoLocal: v5, RetainAsPublished: v5})
			if err != nil {
				return fmt.Errorf("subscribing to %q: %w", t.RemoteTopic(), err)
			}
			if len(codes) == 1 && codes[0] >= 0x80 {
				br.log.Printf("Bridge %s: the remote refused the subscription to %q (0x%02X).", br.cfg.Name, t.RemoteTopic(), codes[0])
			}
		case br.cfg.AttemptUnsubscribe:
			if _, err := rc.Unsubscribe(ctx, nil, []byte(t.RemoteTopic())); err != nil {
				return fmt.Errorf("unsubscribing from %q: %w", t.RemoteTopic(), err)
			}
		}
	}
	return nil
}

// inbound brings the remote's messages into the local broker.
type inbound struct {
	br  *Bridge
	rc  *client.Client
	pkt codec.Packet
}

// receive runs on the remote client's reader goroutine, before the remote
// gets its acknowledgement. A message that finds the local side offline
// closes the connection, so that no acknowledgement leaves: the remote keeps
// it for the next connection.
func (f *inbound) receive(m *client.Message) {
	br := f.br
	// A remote resuming the bridge's session sends what it queued right
	// after its CONNACK, before serve has the local side online.
	if !br.local.waitOnline(f.rc.Done(), br.stop) {
		f.rc.Close()
		return
	}
	topic, ok := inTopic(br.cfg.Topics, string(m.Topic))
	if !ok {
		br.Stats.Dropped.Add(1)
		_ = f.rc.Ack(m.QoS, m.PacketID)
		return
	}
	if e := br.echo.Load(); e != nil && e.echo(string(m.Topic), m.Payload) {
		_ = f.rc.Ack(m.QoS, m.PacketID)
		return // the remote's copy of what the bridge sent it
	}
	p := &f.pkt
	p.Reset()
	p.Type, p.QoS, p.Retain = codec.PUBLISH, m.QoS, m.Retain
	p.Topic, p.Payload = []byte(topic), m.Payload
	if m.Props != nil {
		p.Props = *m.Props
		// What belongs to the remote's connection stays there.
		p.Props.Present &^= 1<<codec.PropTopicAlias | 1<<codec.PropSubscriptionID
		p.Props.SubscriptionIDs = nil
	}
	br.Stats.MsgsIn.Add(1)
	br.Stats.BytesIn.Add(int64(len(m.Payload)))
	br.touch()
	switch err := br.local.publish(p, origin{rc: f.rc, id: m.PacketID, qos: m.QoS}); {
	case errors.Is(err, errOffline):
		f.rc.Close() // not taken: no ack leaves, and the remote keeps it
	case err != nil:
		// Refused by the local broker (which closed the local side):
		// dropped, as a resend would be refused again.
		br.Stats.Dropped.Add(1)
		_ = f.rc.Ack(m.QoS, m.PacketID)
	}
	p.Props = codec.Properties{}
}

// touch records traffic, for lazy bridges' idle_timeout. Any goroutine.
func (br *Bridge) touch() { br.last.Store(time.Now().UnixNano()) }

// forwarder sends what the local session delivers to the remote.
type forwarder struct {
	br      *Bridge
	rc      *client.Client
	v5      bool
	maxQoS  byte
	maxPkt  int
	retain  bool
	msg     client.Message
	props   codec.Properties
	via     codec.UserProperty
	scratch codec.Packet
	started int64
}

func newForwarder(br *Bridge, rc *client.Client, ack *codec.Packet) *forwarder {
	f := &forwarder{br: br, rc: rc, v5: br.version == codec.Version5, maxQoS: 2, retain: br.cfg.OutgoingRetain,
		maxPkt: br.cfg.MaxPacketSize, started: time.Now().UnixNano()}
	if f.v5 {
		if ack.Props.Has(codec.PropMaximumQoS) {
			f.maxQoS = ack.Props.MaximumQoS
		}
		if ack.Props.Has(codec.PropRetainAvailable) && ack.Props.RetainAvailable == 0 {
			f.retain = false
		}
		if ack.Props.Has(codec.PropMaximumPacketSize) && (f.maxPkt == 0 || int(ack.Props.MaximumPacketSize) < f.maxPkt) {
			f.maxPkt = int(ack.Props.MaximumPacketSize)
		}
	}
	f.via = codec.UserProperty{Key: []byte(session.ViaKey), Value: []byte(br.broker.ID())}
	br.touch()
	return f
}

func (f *forwarder) idleFor() time.Duration {
	return time.Duration(time.Now().UnixNano() - f.br.last.Load())
}

// pump drains the local session and forwards each message, until it is
// empty. Errors are the local side's; a lost remote shows in rc.Done.
func (f *forwarder) pump() error {
	l := f.br.local
	var dec codec.Decoder
	dec.Version = codec.Version5
	var p codec.Packet
	for {
		buf, more, err := l.drain(64 << 10)
		if err != nil {
			return err
		}
		// One write to the remote for the whole batch.
		f.rc.Cork()
		for len(buf) > 0 {
			n, derr := dec.Decode(buf, &p)
			if derr != nil {
				f.rc.Flush()
				return fmt.Errorf("bridge: reading the local session: %w", derr)
			}
			buf = buf[n:]
			switch p.Type {
			case codec.PUBLISH:
				f.forward(&p)
			case codec.PUBACK, codec.PUBREC, codec.PUBCOMP: // of what the bridge brought in
				l.acked(p.Type, p.PacketID)
			case codec.PUBREL: // the local flow of a message sent on ends
				l.handleSimple(codec.PUBCOMP, p.PacketID)
			}
		}
		// An error here shows in rc.Done; the messages stay in the session.
		_ = f.rc.Flush()
		if !more {
			return nil
		}
	}
}

// forward sends one local message to the remote. The local session is
// acknowledged only once the remote has it (QoS 1/2), so that nothing the
// local broker acknowledged to its publisher is lost while the remote is
// down or failing: it stays in the session, in the store with persistence.
func (f *forwarder) forward(p *codec.Packet) {
	br := f.br
	l := br.local
	id, localQoS := p.PacketID, p.QoS
	if localQoS > 0 {
		if skip, owedQoS := br.sent.skip(id, p.Dup); skip {
			// In flight: resent by the remote client itself, under its id.
			// Otherwise the remote has it: a stale copy, or one whose local
			// ack is owed (given now).
			if owedQoS > 0 {
				br.ackLocal(id, owedQoS)
			}
			return
		}
	}
	topic, ok := outTopic(br.cfg.Topics, string(p.Topic))
	if !ok {
		br.Stats.Dropped.Add(1)
		l.ack(id, localQoS)
		return
	}
	m := &f.msg
	*m = client.Message{Topic: []byte(topic), Payload: p.Payload, QoS: min(p.QoS, f.maxQoS), Retain: p.Retain && f.retain}
	if f.v5 {
		f.props = p.Props
		f.props.Present &^= 1<<codec.PropTopicAlias | 1<<codec.PropSubscriptionID
		f.props.SubscriptionIDs = nil
		if br.cfg.LoopGuard {
			f.props.User = append(append([]codec.UserProperty(nil), p.Props.User...), f.via)
		}
		m.Props = &f.props
	}
	if f.maxPkt > 0 {
		s := &f.scratch
		s.Type, s.QoS, s.Topic, s.Payload, s.PacketID = codec.PUBLISH, m.QoS, m.Topic, m.Payload, 1
		if m.Props != nil {
			s.Props = *m.Props
		} else {
			s.Props = codec.Properties{}
		}
		if s.EncodedSize(br.version) > f.maxPkt {
			br.Stats.Dropped.Add(1)
			l.ack(id, localQoS)
			return
		}
	}
	if p.Dup {
		br.Stats.Duplicates.Add(1)
	}
	if e := br.echo.Load(); e != nil {
		if _, in := inTopic(br.cfg.Topics, topic); in {
			e.sent(topic, p.Payload)
		}
	}
	br.Stats.MsgsOut.Add(1)
	br.Stats.BytesOut.Add(int64(len(p.Payload)))
	br.touch()
	if m.QoS == 0 {
		if f.rc.Publish(br.ctx, m) == nil {
			l.ack(id, localQoS)
		}
		return
	}
	var acked atomic.Bool
	br.sent.sending(id)
	err := f.rc.PublishAsync(br.ctx, m, func(err error) {
		var ae *client.AckError
		switch {
		case err != nil && !errors.As(err, &ae):
			br.sent.notTaken(id) // ErrSessionCleared: the local session sends it again
		case acked.CompareAndSwap(false, true):
			br.ackLocal(id, localQoS) // a refusal is final too: resending would not change it
		}
	})
	if err != nil && !errors.Is(err, client.ErrConnectionLost) {
		// Not taken (the remote is gone): the message stays in the local
		// session's window and is sent again after the next connection.
		// (ErrConnectionLost: taken, and resent by the remote client.)
		br.sent.notTaken(id)
	}
}

// ackLocal acknowledges to the local session a message the remote has.
// Until the local broker has the acknowledgement, a copy the local session
// resends is not forwarded again (sentTable). Any goroutine.
func (br *Bridge) ackLocal(id uint16, qos byte) {
	br.sent.remoteHas(id)
	br.sent.localAcked(id, qos, br.local.ack(id, qos))
}
