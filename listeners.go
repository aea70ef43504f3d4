package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/midge-mqtt/midge/config"
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
	if l.CAFile != "" || l.CAPath != "" {
		pool, err := loadCAs(l.CAFile, l.CAPath)
		if err != nil {
			return nil, fmt.Errorf("listener %d: %w", l.Port, err)
		}
		tc.ClientCAs = pool
	}
	// As in mosquitto, a client certificate is asked for only with
	// require_certificate, and then it must be signed by cafile/capath.
	if l.RequireCertificate {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if l.Ciphers != "" {
		if tc.CipherSuites, err = cipherSuites(l.Ciphers); err != nil {
			return nil, fmt.Errorf("listener %d: ciphers: %w", l.Port, err)
		}
	}
	return tc, nil
}

// loadCAs reads the PEM certificates of cafile and of every file in capath.
func loadCAs(file, dir string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	var paths []string
	if file != "" {
		paths = append(paths, file)
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("capath: %w", err)
		}
		for _, e := range entries {
			if !e.IsDir() {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
	}
	found := false
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("cafile: %w", err)
		}
		if pool.AppendCertsFromPEM(b) {
			found = true
		} else if p == file {
			return nil, fmt.Errorf("cafile %s: no PEM certificate", p)
		}
	}
	if !found {
		return nil, fmt.Errorf("capath %s: no PEM certificate", dir)
	}
	return pool, nil
}

// openSSLCiphers maps OpenSSL's names of the TLS 1.2 suites Go implements
// to Go's ids (TLS 1.3 suites are not configurable in Go).
var openSSLCiphers = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// cipherSuites reads a colon-separated list of suite names, OpenSSL's or
// IANA's. OpenSSL's exclusions and keywords (!aNULL, HIGH) have no Go
// equivalent: they are refused rather than silently ignored.
func cipherSuites(list string) ([]uint16, error) {
	iana := map[string]uint16{}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		iana[s.Name] = s.ID
	}
	var ids []uint16
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		id, ok := openSSLCiphers[name]
		if !ok {
			id, ok = iana[name]
		}
		if !ok {
			return nil, fmt.Errorf("unknown or unsupported cipher %q", name)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no cipher in %q", list)
	}
	return ids, nil
}
