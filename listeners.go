package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"

	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/internal/tlsnames"
)

// listenerTLS turns a listener's mosquitto TLS keys into a tls.Config (nil
// when the listener has no certfile).
func listenerTLS(l *config.Listener) (*tls.Config, error) {
	if !l.TLS() {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(l.CertFile, l.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("listener %d: certfile/keyfile: %w", l.Port, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	switch l.TLSVersion { // mosquitto: the lowest version accepted
	case "tlsv1.1":
		tc.MinVersion = tls.VersionTLS11
	case "tlsv1.3":
		tc.MinVersion = tls.VersionTLS13
	}
	var cas []*x509.Certificate
	if l.CAFile != "" || l.CAPath != "" {
		pool, certs, err := loadCAs(l.CAFile, l.CAPath)
		if err != nil {
			return nil, fmt.Errorf("listener %d: %w", l.Port, err)
		}
		tc.ClientCAs, cas = pool, certs
		completeChain(&tc.Certificates[0], cas)
	}
	// As in mosquitto, a client certificate is asked for only with
	// require_certificate, and then it must be signed by cafile/capath.
	if l.RequireCertificate {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if l.CRLFile != "" {
		revoked, err := loadCRL(l.CRLFile, cas)
		if err != nil {
			return nil, fmt.Errorf("listener %d: crlfile: %w", l.Port, err)
		}
		tc.VerifyPeerCertificate = revoked.check
	}
	if l.Ciphers != "" {
		if tc.CipherSuites, err = tlsnames.CipherSuites(l.Ciphers); err != nil {
			return nil, fmt.Errorf("listener %d: ciphers: %w", l.Port, err)
		}
	}
	return tc, nil
}

// completeChain appends to pair the intermediate CAs between its leaf and a
// root, found among cas, when certfile holds the leaf alone. OpenSSL (so
// mosquitto) builds the chain it sends from cafile/capath that way, and
// clients that trust only the root need the intermediates.
func completeChain(pair *tls.Certificate, cas []*x509.Certificate) {
	if len(pair.Certificate) != 1 {
		return // certfile has its chain: sent as it is
	}
	cur, err := x509.ParseCertificate(pair.Certificate[0])
	for depth := 0; err == nil && depth < 8; depth++ {
		var issuer *x509.Certificate
		for _, ca := range cas {
			if bytes.Equal(ca.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(ca) == nil {
				issuer = ca
				break
			}
		}
		if issuer == nil || bytes.Equal(issuer.RawSubject, issuer.RawIssuer) {
			return // unknown, or the root: the client has that one
		}
		pair.Certificate = append(pair.Certificate, issuer.Raw)
		cur = issuer
	}
}

// loadCAs reads the PEM certificates of cafile and of every file in capath,
// as a pool and as a list (for the chain sent, and a crlfile's signature).
func loadCAs(file, dir string) (*x509.CertPool, []*x509.Certificate, error) {
	pool := x509.NewCertPool()
	var paths []string
	if file != "" {
		paths = append(paths, file)
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("capath: %w", err)
		}
		for _, e := range entries {
			if !e.IsDir() {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
	}
	var cas []*x509.Certificate
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("cafile: %w", err)
		}
		n := len(cas)
		for rest := b; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if c, err := x509.ParseCertificate(block.Bytes); block.Type == "CERTIFICATE" && err == nil {
				pool.AddCert(c)
				cas = append(cas, c)
			}
		}
		if len(cas) == n && p == file {
			return nil, nil, fmt.Errorf("cafile %s: no PEM certificate", p)
		}
	}
	if len(cas) == 0 {
		return nil, nil, fmt.Errorf("capath %s: no PEM certificate", dir)
	}
	return pool, cas, nil
}

// revocations are the certificates a crlfile revokes, by issuer and serial.
type revocations map[string]bool

func revocationKey(rawIssuer []byte, serial *big.Int) string {
	return string(rawIssuer) + "/" + serial.String()
}

// loadCRL reads the certificate revocation lists of file (PEM, or one in
// DER) and checks each against the listener's CAs: a list no CA signed is
// refused rather than trusted.
func loadCRL(file string, cas []*x509.Certificate) (revocations, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var ders [][]byte
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "X509 CRL" {
			ders = append(ders, blk.Bytes)
		}
	}
	if len(ders) == 0 {
		ders = [][]byte{b} // DER
	}
	r := revocations{}
	for _, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if !signedByCA(crl, cas) {
			return nil, fmt.Errorf("%s: not signed by a certificate of cafile/capath", file)
		}
		for _, e := range crl.RevokedCertificateEntries {
			r[revocationKey(crl.RawIssuer, e.SerialNumber)] = true
		}
	}
	return r, nil
}

// signedByCA reports whether one of cas signed crl.
func signedByCA(crl *x509.RevocationList, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// check is tls.Config.VerifyPeerCertificate: after Go has verified the
// client's chain, a revoked certificate in it fails the handshake.
func (r revocations) check(_ [][]byte, chains [][]*x509.Certificate) error {
	for _, chain := range chains {
		for _, c := range chain {
			if r[revocationKey(c.RawIssuer, c.SerialNumber)] {
				return fmt.Errorf("certificate %q (serial %s) is revoked", c.Subject.CommonName, c.SerialNumber)
			}
		}
	}
	return nil
}
