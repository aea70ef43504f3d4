package tools

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/internal/tlsnames"
)

// run is one tool invocation: its config, streams and client.
type run struct {
	t      tool
	cfg    *config
	out    *syncWriter
	stderr io.Writer
	cli    *client.Client
	id     string // client id as debug lines show it
	qos0   uint16 // libmosquitto numbers QoS 0 messages too
}

// syncWriter serialises writes from the reader goroutine and the main one.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// usage reports a parse error like mosquitto's tools and returns the exit code.
func usage(t tool, err error, usageText string, stdout, stderr io.Writer) int {
	ue, ok := err.(*usageError)
	if !ok {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if ue == errHelp {
		fmt.Fprint(stdout, usageText)
		return 1
	}
	if strings.HasPrefix(ue.msg, "Combining") {
		fmt.Fprintf(stdout, "Error: %s", ue.msg) // mosquitto_sub prints this one on stdout
		return 1
	}
	fmt.Fprintf(stderr, "Error: %s\n", strings.TrimSuffix(ue.msg, "\n"))
	if ue.fullUsage {
		fmt.Fprint(stdout, usageText)
	} else {
		fmt.Fprintf(stderr, "\nUse '%s --help' to see usage.\n", t.midgeName())
	}
	return 1
}

func (t tool) midgeName() string { return [...]string{"midge pub", "midge sub", "midge rr"}[t] }

// options turns the config into client options.
func (r *run) options() (client.Options, error) {
	c := r.cfg
	addr := net.JoinHostPort(c.host, strconv.Itoa(c.port))
	if c.unix != "" {
		addr = c.unix
	}
	o := client.Options{
		Addr: addr, Unix: c.unix != "", Version: c.version,
		ClientID: c.id, CleanStart: c.clean, KeepAlive: uint16(c.keepalive),
		Username: c.username, HasUsername: c.hasUser, HasPassword: c.hasPassword,
		MaxInflight: c.maxInflight,
	}
	if c.hasPassword {
		o.Password = []byte(c.password)
	}
	if o.ClientID == "" && c.version == codec.Version31 {
		o.ClientID = randomID() // 3.1 has no empty client id; libmosquitto makes one up
	}
	if c.bindAddr != "" {
		o.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.bindAddr)}
	}
	if c.willTopic != "" {
		o.Will = &client.Message{Topic: []byte(c.willTopic), Payload: []byte(c.willPayload),
			QoS: c.willQoS, Retain: c.willRetain, Props: c.propsFor("will")}
	}
	if p := c.propsFor("connect"); p != nil {
		o.Props = *p
	}
	if c.version == codec.Version5 {
		// -c without -x keeps the session forever; -x sets it explicitly.
		exp := int64(0)
		if !c.clean {
			exp = 0xFFFFFFFF
		}
		if c.sessionExpiry >= 0 {
			exp = c.sessionExpiry
		}
		if exp > 0 {
			o.Props.SessionExpiry = uint32(exp)
			o.Props.Set(codec.PropSessionExpiry)
		}
	}
	if c.useTLS {
		tc, err := c.tlsConfig()
		if err != nil {
			return o, err
		}
		o.TLS = tc
	}
	if c.debug {
		r.id = o.ClientID
		o.OnPacket = r.debug
	}
	return o, nil
}

// debug prints libmosquitto-style packet lines on stdout (-d).
func (r *run) debug(sent bool, p *codec.Packet) {
	if r.cfg.quiet {
		return
	}
	if !sent && p.Type == codec.CONNACK && p.Props.Has(codec.PropAssignedClientID) {
		r.id = string(p.Props.AssignedClientID)
	}
	mid := p.PacketID
	if sent && p.Type == codec.PUBLISH && p.QoS == 0 {
		r.qos0++
		mid = r.qos0
	}
	fmt.Fprintln(r.out, debugLine(r.id, sent, p, mid))
}

// tlsConfig builds the TLS settings of --cafile --cert --key --insecure --tls-version.
func (c *config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{ServerName: c.host, InsecureSkipVerify: c.insecure, MinVersion: tls.VersionTLS12}
	if c.osCerts {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("Problem setting TLS options: %v.", err)
		}
		tc.RootCAs = pool
	}
	if c.cafile != "" || c.capath != "" {
		if tc.RootCAs == nil {
			tc.RootCAs = x509.NewCertPool()
		}
	}
	if c.cafile != "" {
		pem, err := os.ReadFile(c.cafile)
		if err != nil {
			return nil, fmt.Errorf("Problem setting TLS options: File not found.")
		}
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("Problem setting TLS options: Invalid CA file %s.", c.cafile)
		}
	}
	if c.capath != "" {
		// OpenSSL's hashed directory (c_rehash): every file is read, so the
		// hash links and the certificates they point to both load.
		entries, err := os.ReadDir(c.capath)
		if err != nil {
			return nil, fmt.Errorf("Problem setting TLS options: %v.", err)
		}
		found := false
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(c.capath, e.Name())); err == nil && tc.RootCAs.AppendCertsFromPEM(b) {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("Problem setting TLS options: no CA certificate in %s.", c.capath)
		}
	}
	if c.ciphers != "" {
		ids, err := tlsnames.CipherSuites(c.ciphers)
		if err != nil {
			return nil, fmt.Errorf("Problem setting TLS options: %v.", err)
		}
		tc.CipherSuites = ids
	}
	if c.alpn != "" {
		tc.NextProtos = []string{c.alpn}
	}
	if c.cert != "" || c.key != "" {
		if c.cert == "" || c.key == "" {
			return nil, fmt.Errorf("Both certfile and keyfile must be provided if one of them is set.")
		}
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("Problem setting TLS options: %v.", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	switch c.tlsVersion {
	case "", "tlsv1.2":
	case "tlsv1.3":
		tc.MinVersion = tls.VersionTLS13
	case "tlsv1.1":
		tc.MinVersion = tls.VersionTLS11
	default:
		return nil, fmt.Errorf("Problem setting TLS options: Invalid TLS version %q.", c.tlsVersion)
	}
	return tc, nil
}

// connect builds the client and connects, reporting failures the way
// mosquitto's tools do; it returns the exit code when it fails.
// onMessage (may be nil) receives what the subscriptions deliver.
func (r *run) connect(onMessage func(*client.Message)) (int, bool) {
	o, err := r.options()
	if err != nil {
		r.errorf("Error: %v\n", err)
		return 1, false
	}
	r.cli = client.New(o)
	r.cli.OnMessage = onMessage
	return r.reconnect()
}

func (r *run) reconnect() (int, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := r.cli.Connect(ctx)
	if err == nil {
		return 0, true
	}
	var ce *client.ConnackError
	var oe *net.OpError
	var de *net.DNSError
	switch {
	case errors.As(err, &ce):
		r.errorf("Connection error: %s\n", client.ConnackText(ce.Version, ce.Code))
		if r.t == toolPub {
			if ce.Version == codec.Version5 {
				r.errorf("Error: A network protocol error occurred when communicating with the broker.\n")
			} else {
				r.errorf("Error: The connection was refused.\n")
			}
		}
		return int(ce.Code), false
	case errors.As(err, &de):
		r.errorf("Unable to connect (Lookup error.).\n")
	case errors.Is(err, syscall.ECONNREFUSED):
		r.errorf("Error: Connection refused\n")
	case errors.As(err, &oe):
		r.errorf("Error: %v\n", oe.Err)
	default:
		r.errorf("Error: %v\n", err)
	}
	return 1, false
}

// errorf writes to stderr unless --quiet.
func (r *run) errorf(format string, a ...any) {
	if !r.cfg.quiet {
		fmt.Fprintf(r.stderr, format, a...)
	}
}

// disconnect ends the session with the -D disconnect properties.
func (r *run) disconnect() {
	r.cli.Disconnect(codec.Success, r.cfg.propsFor("disconnect"))
}

// randomID is "mosq-" and 18 random letters and digits, as libmosquitto generates.
func randomID() string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 18)
	rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return "mosq-" + string(b)
}
