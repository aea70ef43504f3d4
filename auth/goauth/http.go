package goauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// httpBackend asks an HTTP service, as go-auth's http backend does: a
// request per question to getuser_uri, superuser_uri and aclcheck_uri, with
// the fields in a JSON body (or a form); a 2xx status allows, another status
// denies, and >= 500 or no answer is an error (never cached, retried
// retry_count times). With response_mode json the body must also say
// {"ok": true}, with text the body must be "ok".
type httpBackend struct {
	base                         string // scheme://host[:port]
	userURI, superURI, aclURI    string
	method, paramsMode, response string
	userAgent                    string
	client                       *http.Client
}

func newHTTP(opt func(string) (string, bool)) (*httpBackend, error) {
	b := &httpBackend{method: http.MethodPost, paramsMode: "json", response: "status", userAgent: "midge-go-auth"}
	var missing []string
	need := func(name string) string {
		v, ok := opt(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	}
	host, port := need("http_host"), need("http_port")
	b.userURI, b.aclURI = need("http_getuser_uri"), need("http_aclcheck_uri")
	if len(missing) > 0 {
		return nil, &OptError{Name: "backends", Msg: "the http backend needs auth_opt_" + strings.Join(missing, ", auth_opt_")}
	}
	b.superURI, _ = opt("http_superuser_uri")
	if v, ok := opt("http_response_mode"); ok {
		switch v {
		case "status", "json", "text":
			b.response = v
		default:
			return nil, &OptError{Name: "http_response_mode", Msg: fmt.Sprintf("expected status, json or text, got %q", v)}
		}
	}
	if v, ok := opt("http_params_mode"); ok {
		switch v {
		case "json", "form":
			b.paramsMode = v
		default:
			return nil, &OptError{Name: "http_params_mode", Msg: fmt.Sprintf("expected json or form, got %q", v)}
		}
	}
	if v, ok := opt("http_method"); ok {
		switch v {
		case http.MethodPost, http.MethodGet, http.MethodPut:
			b.method = v
		default:
			return nil, &OptError{Name: "http_method", Msg: fmt.Sprintf("expected POST, GET or PUT, got %q", v)}
		}
	}
	if b.paramsMode == "form" && b.method == http.MethodGet {
		return nil, &OptError{Name: "http_params_mode", Msg: "form parameters need http_method POST or PUT"}
	}
	if v, ok := opt("http_user_agent"); ok {
		b.userAgent = v
	}
	timeout := 5 * time.Second
	if v, ok := opt("http_timeout"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, &OptError{Name: "http_timeout", Msg: fmt.Sprintf("expected seconds > 0, got %q", v)}
		}
		timeout = time.Duration(n) * time.Second
	}
	scheme := "http://"
	withTLS, _ := opt("http_with_tls")
	verify, _ := opt("http_verify_peer")
	if withTLS == "true" {
		scheme = "https://"
	}
	b.base = scheme + host
	if port != "" {
		b.base += ":" + port
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
		// go-auth checks the server's certificate only with http_verify_peer true.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: verify != "true"}}
	b.client = &http.Client{Timeout: timeout, Transport: tr}
	return b, nil
}

func (b *httpBackend) name() string { return "http" }

func (b *httpBackend) getUser(ctx context.Context, username, password, clientID string) (bool, error) {
	return b.ask(ctx, b.userURI, [][2]string{{"username", username}, {"password", password}, {"clientid", clientID}}, nil)
}

func (b *httpBackend) superuser(ctx context.Context, username string) (bool, error) {
	if b.superURI == "" {
		return false, nil
	}
	return b.ask(ctx, b.superURI, [][2]string{{"username", username}}, nil)
}

func (b *httpBackend) checkACL(ctx context.Context, username, topic, clientID string, acc int) (bool, error) {
	return b.ask(ctx, b.aclURI, [][2]string{{"username", username}, {"clientid", clientID}, {"topic", topic}}, &acc)
}

// ask makes one request: fields in order, acc as a JSON number.
func (b *httpBackend) ask(ctx context.Context, uri string, fields [][2]string, acc *int) (bool, error) {
	var body io.Reader
	var ctype string
	if b.paramsMode == "form" {
		v := url.Values{}
		for _, f := range fields {
			v.Set(f[0], f[1])
		}
		if acc != nil {
			v.Set("acc", strconv.Itoa(*acc))
		}
		body, ctype = strings.NewReader(v.Encode()), "application/x-www-form-urlencoded"
	} else {
		m := make(map[string]any, len(fields)+1)
		for _, f := range fields {
			m[f[0]] = f[1]
		}
		if acc != nil {
			m["acc"] = *acc
		}
		j, err := json.Marshal(m)
		if err != nil {
			return false, err
		}
		body, ctype = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, b.method, b.base+uri, body)
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", b.userAgent)
	resp, err := b.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return false, err
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		if resp.StatusCode >= 500 {
			return false, fmt.Errorf("goauth: %s: status %d", uri, resp.StatusCode)
		}
		return false, nil
	}
	switch b.response {
	case "text":
		return string(data) == "ok", nil
	case "json":
		var r struct {
			Ok    bool   `json:"ok"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			return false, fmt.Errorf("goauth: %s: %v", uri, err)
		}
		return r.Ok, nil
	}
	return true, nil
}
