package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/midge-mqtt/midge/codec"
)

// runTLSConns is conns over TLS: workers dial, handshake and CONNECT in
// parallel (a TLS client is a goroutine and a tls.Conn each: the storm's
// raw sockets cannot speak TLS). The connect phase's rate is the broker's
// handshake rate, and its CPU over it the CPU per handshake; sessions are
// not resumed, so every handshake is a full one.
func runTLSConns(ctx context.Context, c Config) (*Result, error) {
	limit := raiseFileLimit()
	if limit > 0 && uint64(c.Conns)+64 > limit {
		return nil, fmt.Errorf("bench: %s: %d connections need more than the descriptor limit %d", c.Scenario, c.Conns, limit)
	}
	over := "TLS"
	if c.Scenario == "wss-conns" {
		over = "wss"
	}
	res := &Result{Scenario: c.Scenario, Shape: fmt.Sprintf("%d idle over %s, keepalive %ds", c.Conns, over, idleKeepAlive), Conns: c.Conns}
	d := newDialer(c.Host, c.Port, "")
	tc := c.TLS.Clone()
	tc.ClientSessionCache = nil
	d.tls = tc
	id := fmt.Sprintf("tlsconns-%06x-", rand.Uint32()&0xffffff)
	var mu sync.Mutex
	conns := make([]net.Conn, 0, c.Conns)
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	connect := d.connect
	if c.Scenario == "wss-conns" {
		connect = d.connectWS
	}
	// Enough handshakes in flight to keep the broker's cores busy.
	workers := 4 * c.Loops
	open := func(have, n int) (int, error) {
		err := parallel(n, workers, func(i int) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			nc, err := connect(fmt.Sprintf("%s%07d", id, have+i), c.Version, idleKeepAlive)
			if err != nil {
				return err
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			return nil
		})
		return len(conns), err
	}
	pingAll := func() error {
		for _, nc := range conns {
			if err := ping(nc); err != nil {
				return fmt.Errorf("bench: %s: keepalive: %w", c.Scenario, err)
			}
		}
		return nil
	}
	if err := connectAndHold(ctx, &c, res, open, pingAll); err != nil {
		return nil, err
	}
	// A broker that dropped idle connections shows it here: a PINGREQ must
	// be answered on each of the first 100.
	for i, nc := range conns[:min(len(conns), 100)] {
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		var b [2]byte
		err := ping(nc)
		if err == nil {
			_, err = nc.Read(b[:])
		}
		if err != nil || b[0] != 0xd0 {
			err = fmt.Errorf("bench: %s: idle connection %d: no PINGRESP: %v", c.Scenario, i, err)
			res.Error = err.Error()
			return res, err
		}
	}
	return res, nil
}

// ping sends a PINGREQ (in a WebSocket frame on a wsConn).
func ping(nc net.Conn) error {
	_, err := nc.Write(pingFrame)
	return err
}

// wsConn is MQTT over a client WebSocket: each Write is one masked binary
// frame, Read returns the payloads of the frames received.
type wsConn struct {
	net.Conn
	r    io.Reader
	left []byte
}

func (w *wsConn) Write(p []byte) (int, error) {
	return len(p), ws.WriteFrame(w.Conn, ws.MaskFrame(ws.NewBinaryFrame(p)))
}

func (w *wsConn) Read(p []byte) (int, error) {
	for len(w.left) == 0 {
		f, err := ws.ReadFrame(w.r)
		if err != nil {
			return 0, err
		}
		if f.Header.OpCode == ws.OpBinary || f.Header.OpCode == ws.OpContinuation {
			w.left = f.Payload
		}
	}
	n := copy(p, w.left)
	w.left = w.left[n:]
	return n, nil
}

// connectWS is connect over WebSocket (over TLS when d.tls is set), with the
// subprotocol "mqtt".
func (d *dialer) connectWS(id string, version byte, keepalive uint16) (net.Conn, error) {
	scheme := "ws://"
	if d.tls != nil {
		scheme = "wss://"
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	wd := ws.Dialer{Protocols: []string{"mqtt"}, TLSConfig: d.tls, Timeout: d.timeout}
	nc, br, _, err := wd.Dial(ctx, scheme+d.addr+"/mqtt")
	if err != nil {
		return nil, fmt.Errorf("bench: websocket %s: %w", d.addr, err)
	}
	w := &wsConn{Conn: nc, r: nc}
	if br != nil {
		w.r = io.MultiReader(br, nc) // what the dialer read past the handshake
	}
	p := codec.Packet{Type: codec.CONNECT, Connect: codec.Connect{ProtocolLevel: version,
		CleanStart: true, KeepAlive: keepalive, ClientID: []byte(id)}}
	_ = nc.SetDeadline(time.Now().Add(d.timeout))
	defer nc.SetDeadline(time.Time{})
	if _, err := w.Write(p.Encode(nil, version)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("bench: CONNECT: %w", err)
	}
	var ack codec.Packet
	if err := expect(w, version, codec.CONNACK, &ack); err != nil {
		nc.Close()
		return nil, err
	}
	if ack.ReasonCode != 0 {
		nc.Close()
		return nil, fmt.Errorf("bench: CONNACK refused: code %d", ack.ReasonCode)
	}
	return w, nil
}

// ClientTLS is the generator's TLS configuration: the broker's certificate
// checked against cafile, or not checked at all when insecure.
func ClientTLS(cafile string, insecure bool) (*tls.Config, error) {
	tc := &tls.Config{InsecureSkipVerify: insecure} // #nosec: asked for by -insecure
	if cafile != "" {
		pem, err := os.ReadFile(cafile)
		if err != nil {
			return nil, fmt.Errorf("bench: cafile: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bench: cafile %s: no PEM certificate", cafile)
		}
	}
	return tc, nil
}
