package loop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// testPKI is a certificate authority made for one test.
type testPKI struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	pem   []byte
	pool  *x509.CertPool
	count int64
}

func newPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{cert: cert, key: key, pool: x509.NewCertPool(), count: 1}
	p.pool.AddCert(cert)
	p.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return p
}

// issue signs a certificate for cn: a server certificate for 127.0.0.1 and
// localhost, or a client certificate.
func (p *testPKI) issue(t testing.TB, cn string, server bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.count++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.count),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// files writes the CA and a certificate for cn into dir and returns their paths.
func (p *testPKI) files(t testing.TB, dir, cn string, server bool) (ca, cert, key string) {
	t.Helper()
	_, c, k := p.issue(t, cn, server)
	ca, cert, key = filepath.Join(dir, "ca.crt"), filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	for path, b := range map[string][]byte{ca: p.pem, cert: c, key: k} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, cert, key
}

// serverTLS is a listener's TLS configuration; clientCAs != nil requires a
// client certificate signed by it.
func (p *testPKI) serverTLS(t testing.TB, clientCAs *x509.CertPool) *tls.Config {
	pair, _, _ := p.issue(t, "midge-test-server", true)
	c := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		c.ClientCAs, c.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	return c
}

// clientTLS trusts the CA and presents certs.
func (p *testPKI) clientTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", Certificates: certs, MinVersion: tls.VersionTLS12}
}

// wsClient is the client side of an MQTT-over-WebSocket connection as a
// net.Conn: Write sends one masked binary frame, Read returns the payloads
// of binary frames. writeFrame and readFrame reach the frames themselves.
type wsClient struct {
	net.Conn
	r   io.Reader
	buf []byte
	hs  ws.Handshake
}

// dialWS opens a WebSocket to addr offering the subprotocol "mqtt", over TLS
// when tc is not nil.
func dialWS(t testing.TB, addr string, tc *tls.Config) *wsClient {
	t.Helper()
	d := ws.Dialer{Protocols: []string{"mqtt"}, Timeout: v5Wait, TLSConfig: tc}
	scheme := "ws://"
	if tc != nil {
		scheme = "wss://"
	}
	ctx, cancel := context.WithTimeout(context.Background(), v5Wait)
	defer cancel()
	c, br, hs, err := d.Dial(ctx, scheme+addr+"/mqtt")
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	w := &wsClient{Conn: c, r: c, hs: hs}
	if br != nil {
		w.r = io.MultiReader(br, c) // bytes the dialer read past the handshake
	}
	return w
}

func (w *wsClient) Write(p []byte) (int, error) {
	return len(p), w.writeFrame(ws.OpBinary, true, p)
}

func (w *wsClient) writeFrame(op ws.OpCode, fin bool, p []byte) error {
	return ws.WriteFrame(w.Conn, ws.MaskFrame(ws.NewFrame(op, fin, p)))
}

// readFrame reads one frame; server frames must not be masked.
func (w *wsClient) readFrame() (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(w.r)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(w.r, p); err != nil {
		return h, nil, err
	}
	if h.Masked {
		return h, nil, errors.New("masked frame from the server")
	}
	return h, p, nil
}

func (w *wsClient) Read(p []byte) (int, error) {
	for len(w.buf) == 0 {
		h, payload, err := w.readFrame()
		if err != nil {
			return 0, err
		}
		switch h.OpCode {
		case ws.OpBinary, ws.OpContinuation:
			w.buf = payload
		case ws.OpClose:
			return 0, io.EOF
		case ws.OpPing, ws.OpPong:
		default:
			return 0, errors.New("unexpected websocket frame")
		}
	}
	n := copy(p, w.buf)
	w.buf = w.buf[n:]
	return n, nil
}
