package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/tools"
)

// testCA signs the certificates of one test and writes them as PEM files.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	n    int64
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	ca := &testCA{dir: dir, n: 1}
	ca.cert, ca.key = ca.sign(t, name, nil, nil, true)
	return ca
}

// sign makes a certificate for cn (self-signed when parent is nil) and writes
// name.crt and name.key.
func (ca *testCA) sign(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.n++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.n), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.ExtKeyUsage, tmpl.IPAddresses, tmpl.DNSNames = nil, nil, nil
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	writeFile(t, filepath.Join(ca.dir, cn+".crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(ca.dir, cn+".key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// issue signs a certificate for cn and returns the paths of its files.
func (ca *testCA) issue(t *testing.T, cn string) (crt, key string) {
	ca.sign(t, cn, ca.cert, ca.key, false)
	return filepath.Join(ca.dir, cn+".crt"), filepath.Join(ca.dir, cn+".key")
}

// TestTLSClientCertificates runs `midge -c` with a TLS listener that requires
// client certificates and takes the certificate's CN as the username, with an
// ACL file, and drives it with Debian's mosquitto_pub/mosquitto_sub and with
// midge pub/sub.
func TestTLSClientCertificates(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	srvCrt, srvKey := ca.issue(t, "server")
	aliceCrt, aliceKey := ca.issue(t, "alice")
	bobCrt, bobKey := ca.issue(t, "bob")
	rogue := newTestCA(t, t.TempDir(), "rogue-ca")
	rogueCrt, rogueKey := rogue.issue(t, "alice")
	caFile := filepath.Join(dir, "ca.crt")

	writeFile(t, filepath.Join(dir, "acl"), "user alice\ntopic readwrite alice/#\n\nuser bob\ntopic readwrite bob/#\n")
	port := freePort(t)
	conf := fmt.Sprintf(`allow_anonymous false
acl_file %s
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
`, filepath.Join(dir, "acl"), port, caFile, srvCrt, srvKey)
	writeFile(t, filepath.Join(dir, "midge.conf"), conf)
	_, logs := startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-c", filepath.Join(dir, "midge.conf"))
	p := fmt.Sprint(port)
	tlsArgs := []string{"-h", "127.0.0.1", "-p", p, "--cafile", caFile, "--cert", aliceCrt, "--key", aliceKey}
	bobArgs := []string{"-h", "127.0.0.1", "-p", p, "--cafile", caFile, "--cert", bobCrt, "--key", bobKey}

	// mosquitto_sub as bob (no -u: the certificate's CN is the username)
	// reads bob/#. alice may not write there (the ACL is checked against the
	// CN), bob may.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, "mosquitto_sub", append(bobArgs, "-t", "bob/#", "-C", "1", "-W", "10", "-v", "-i", "bob-sub")...)
	var subOut bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "as bob-sub") })
	for _, args := range [][]string{append(tlsArgs, "-t", "bob/x", "-m", "from alice"), append(bobArgs, "-t", "bob/y", "-m", "from bob")} {
		out, err := exec.CommandContext(ctx, "mosquitto_pub", append(args, "-q", "1")...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
		}
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, subOut.String())
	}
	if got := subOut.String(); got != "bob/y from bob\n" {
		t.Fatalf("mosquitto_sub got %q", got)
	}
	if !strings.Contains(logs.String(), "u'alice'") {
		t.Errorf("the connection log does not name alice as the username:\n%s", logs.String())
	}

	// No client certificate, or one from another CA: the handshake fails.
	for name, args := range map[string][]string{
		"no certificate": {"-h", "127.0.0.1", "-p", p, "--cafile", caFile},
		"rogue CA":       {"-h", "127.0.0.1", "-p", p, "--cafile", caFile, "--cert", rogueCrt, "--key", rogueKey},
	} {
		out, err := exec.CommandContext(ctx, "mosquitto_pub", append(args, "-t", "alice/x", "-m", "x")...).CombinedOutput()
		if err == nil {
			t.Errorf("%s: mosquitto_pub succeeded:\n%s", name, out)
		}
	}

	// midge pub and sub with the same TLS flags.
	var sOut, sErr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- tools.Sub(append(tlsArgs, "-t", "alice/m", "-C", "1", "-W", "10", "-i", "midge-sub"), nil, &sOut, &sErr)
	}()
	waitFor(t, func() bool { return strings.Contains(logs.String(), "as midge-sub") })
	var pOut, pErr bytes.Buffer
	if code := tools.Pub(append(tlsArgs, "-t", "alice/m", "-m", "from midge pub", "-q", "2"), nil, &pOut, &pErr); code != 0 {
		t.Fatalf("midge pub: exit %d: %s", code, pErr.String())
	}
	if code := <-done; code != 0 || sOut.String() != "from midge pub\n" {
		t.Fatalf("midge sub: exit %d, out %q, err %q", code, sOut.String(), sErr.String())
	}
	// Without a certificate midge pub fails too.
	if code := tools.Pub([]string{"-h", "127.0.0.1", "-p", p, "--cafile", caFile, "-t", "alice/m", "-m", "x"}, nil, &pOut, &pErr); code == 0 {
		t.Fatal("midge pub without a client certificate succeeded")
	}
}

// TestTLSCRL: with crlfile, a client whose certificate the CA has revoked
// fails its handshake and one it has not revoked connects, as with
// mosquitto; a list the CA did not sign stops the broker.
func TestTLSCRL(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	srvCrt, srvKey := ca.issue(t, "server")
	aliceCrt, aliceKey := ca.issue(t, "alice")
	bob, _ := ca.sign(t, "bob", ca.cert, ca.key, false)
	bobCrt, bobKey := filepath.Join(dir, "bob.crt"), filepath.Join(dir, "bob.key")
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: bob.SerialNumber, RevocationTime: time.Now()}},
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	crlFile := filepath.Join(dir, "ca.crl")
	writeFile(t, crlFile, string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})))
	caFile := filepath.Join(dir, "ca.crt")
	port := freePort(t)
	conf := fmt.Sprintf("allow_anonymous true\nlistener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\ncrlfile %s\n",
		port, caFile, srvCrt, srvKey, crlFile)
	writeFile(t, filepath.Join(dir, "midge.conf"), conf)
	startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-c", filepath.Join(dir, "midge.conf"))

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pub := func(crt, key string) ([]byte, error) {
		return exec.CommandContext(ctx, "mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "--cafile", caFile,
			"--cert", crt, "--key", key, "-t", "crl/t", "-m", "x", "-q", "1").CombinedOutput()
	}
	if out, err := pub(aliceCrt, aliceKey); err != nil {
		t.Fatalf("alice (not revoked): %v\n%s", err, out)
	}
	if out, err := pub(bobCrt, bobKey); err == nil {
		t.Fatalf("bob (revoked) published:\n%s", out)
	}

	// A list signed by another CA is refused at start.
	rogue := newTestCA(t, t.TempDir(), "rogue-ca")
	other, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, rogue.cert, rogue.key)
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "rogue.crl")
	writeFile(t, foreign, string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: other})))
	writeFile(t, filepath.Join(dir, "foreign.conf"), strings.Replace(conf, crlFile, foreign, 1))
	out, err := exec.CommandContext(ctx, midgeBin, "-c", filepath.Join(dir, "foreign.conf")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not signed by a certificate of cafile") {
		t.Fatalf("midge with a foreign crlfile: %v\n%s", err, out)
	}
}

// TestTLSServerOnly runs a TLS listener without client certificates beside
// a plain one and a WebSocket one: clients check the server's certificate,
// and a message crosses from TLS to TCP.
func TestTLSServerOnly(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	srvCrt, srvKey := ca.issue(t, "server")
	caFile := filepath.Join(dir, "ca.crt")
	tlsPort, tcpPort, wsPort := freePort(t), freePort(t), freePort(t)
	conf := fmt.Sprintf(`allow_anonymous true
listener %d 127.0.0.1
listener %d 127.0.0.1
certfile %s
keyfile %s
listener %d 127.0.0.1
protocol websockets
`, tcpPort, tlsPort, srvCrt, srvKey, wsPort)
	writeFile(t, filepath.Join(dir, "midge.conf"), conf)
	_, logs := startMidge(t, fmt.Sprintf("127.0.0.1:%d", tlsPort), "-c", filepath.Join(dir, "midge.conf"))

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", fmt.Sprint(tcpPort),
		"-t", "x/#", "-C", "1", "-W", "10", "-i", "plain-sub")
	var subOut bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "as plain-sub") })
	out, err := exec.CommandContext(ctx, "mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(tlsPort),
		"--cafile", caFile, "-t", "x/1", "-m", "over tls").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	if err := sub.Wait(); err != nil || subOut.String() != "over tls\n" {
		t.Fatalf("mosquitto_sub: %v %q", err, subOut.String())
	}
	// A client that does not trust the server's CA refuses it.
	if out, err := exec.CommandContext(ctx, "mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(tlsPort),
		"--cafile", "/etc/ssl/certs/ca-certificates.crt", "-t", "x/1", "-m", "x").CombinedOutput(); err == nil {
		t.Fatalf("mosquitto_pub trusted an unknown CA:\n%s", out)
	}
}

// TestTLSChainFromCAFile: a certfile holding only the server's certificate,
// signed by an intermediate CA that cafile holds with the root, works for a
// client that trusts only the root: the intermediate is sent in the chain,
// as mosquitto (OpenSSL) does (issue 21, mosquitto's 08-ssl-* tests).
func TestTLSChainFromCAFile(t *testing.T) {
	dir := t.TempDir()
	root := newTestCA(t, dir, "root")
	inter := &testCA{dir: dir, n: 100}
	inter.cert, inter.key = root.sign(t, "intermediate", root.cert, root.key, true)
	srvCrt, srvKey := inter.issue(t, "server")
	caFile := filepath.Join(dir, "all-ca.crt")
	writeFile(t, caFile, readFile(t, filepath.Join(dir, "root.crt"))+readFile(t, filepath.Join(dir, "intermediate.crt")))
	port := freePort(t)
	conf := fmt.Sprintf("allow_anonymous true\nlistener %d 127.0.0.1\ncertfile %s\nkeyfile %s\ncafile %s\n",
		port, srvCrt, srvKey, caFile)
	writeFile(t, filepath.Join(dir, "midge.conf"), conf)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startMidge(t, addr, "-c", filepath.Join(dir, "midge.conf"))

	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("a client trusting only the root: %v", err)
	}
	defer c.Close()
	if chain := c.ConnectionState().PeerCertificates; len(chain) != 2 || chain[1].Subject.CommonName != "intermediate" {
		t.Fatalf("chain of %d certificates, want server and intermediate", len(chain))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
