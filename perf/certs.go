package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The TLS scenarios run both brokers with the same certificates, made for the
// run: a CA, and a server certificate for 127.0.0.1 with an RSA 2048 key
// (tls-fanin, tls-pairs, tls-conns) or an ECDSA P-256 key (tls-conns-ec).
type certs struct {
	client         *tls.Config // trusts the CA
	rsaCrt, rsaKey string
	ecCrt, ecKey   string
}

func makeCerts(dir string) (*certs, error) {
	// mosquitto started as root reads its certificates after it has become
	// the mosquitto user: the run's directory must let it in. The keys are
	// made for this run and thrown away with it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "midge perf CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c := &certs{client: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}

	issue := func(name string, key crypto.Signer, serial int64) (crt, keyPath string, err error) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			return "", "", err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return "", "", err
		}
		crt, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		// Readable by mosquitto, which may run as its own user.
		if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return "", "", err
		}
		return crt, keyPath, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o644)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if c.rsaCrt, c.rsaKey, err = issue("server-rsa", rsaKey, 2); err != nil {
		return nil, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if c.ecCrt, c.ecKey, err = issue("server-ec", ecKey, 3); err != nil {
		return nil, err
	}
	return c, nil
}

// isTLS tells the scenarios that need a TLS listener.
func isTLS(scenario string) bool {
	return strings.HasPrefix(scenario, "tls-") || strings.HasPrefix(scenario, "wss-")
}

// withTLS turns a broker's configuration into one whose listener serves
// TLS (wss-*: WebSocket over TLS) with the scenario's certificate.
func (c *certs) withTLS(conf, scenario string) (string, error) {
	crt, key := c.rsaCrt, c.rsaKey
	if scenario == "tls-conns-ec" {
		crt, key = c.ecCrt, c.ecKey
	}
	first, rest, ok := strings.Cut(conf, "\n")
	if !ok || !strings.HasPrefix(first, "listener ") {
		return "", fmt.Errorf("perf: %s: the configuration does not start with its listener", scenario)
	}
	if strings.HasPrefix(scenario, "wss-") {
		first += "\nprotocol websockets"
	}
	return fmt.Sprintf("%s\ncertfile %s\nkeyfile %s\n%s", first, crt, key, rest), nil
}
