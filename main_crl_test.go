package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// TestConfCRLAndSubject: a TLS listener with require_certificate, a crlfile
// revoking bob's certificate and use_subject_as_username: bob's handshake
// is refused; alice connects, with her certificate's whole subject as her
// username.
func TestConfCRLAndSubject(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	srvCrt, srvKey := ca.issue(t, "server")
	aliceCrt, aliceKey := ca.issue(t, "alice")
	bob, _ := ca.sign(t, "bob", ca.cert, ca.key, false)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: bob.SerialNumber, RevocationTime: time.Now()}},
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	crl := filepath.Join(dir, "ca.crl")
	writeFile(t, crl, string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})))

	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, "listener "+itoa(port)+" 127.0.0.1\nallow_anonymous true\ncafile "+filepath.Join(dir, "ca.crt")+
		"\ncertfile "+srvCrt+"\nkeyfile "+srvKey+"\nrequire_certificate true\nuse_subject_as_username true\n"+
		"crlfile "+crl+"\ndhparamfile /nonexistent/dh.pem\n")
	addr := "127.0.0.1:" + itoa(port)
	_, out := startMidge(t, addr, "-c", conf)
	if !strings.Contains(out.String(), "dhparamfile: accepted and unused") {
		t.Errorf("no notice for dhparamfile:\n%s", out.String())
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dial := func(crt, key string) *mq {
		pair, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"})
		if err != nil {
			return nil // refused during the handshake (TLS 1.2)
		}
		t.Cleanup(func() { c.Close() })
		m := &mq{t: t, c: c}
		m.dec.Version = codec.Version311
		return m
	}
	alice := dial(aliceCrt, aliceKey)
	alice.connectOK("alice-1")
	waitFor(t, func() bool { return strings.Contains(out.String(), "as alice-1 (p2, c1, k30, u'CN=alice')") })

	if m := dial(filepath.Join(dir, "bob.crt"), filepath.Join(dir, "bob.key")); m != nil {
		m.send(m.connectPacket("bob-1")) // TLS 1.3: the server checks after the client's handshake ends
		if p, err := m.next(mqWait); err == nil {
			t.Fatalf("revoked certificate: got %v", p.Type)
		}
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "is revoked") })
	if strings.Contains(out.String(), "as bob-1") {
		t.Fatal("bob connected with a revoked certificate")
	}
}
