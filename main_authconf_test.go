package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuthConfigErrors: a plugin setting midge cannot serve stops the broker
// with the file, line and key.
func TestAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, "{not json")
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, "u:PBKDF2$sha512$100$c2FsdA==$a2V5\n")
	dynsec := "listener 0 127.0.0.1\nplugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\n"
	goauth := "listener 0 127.0.0.1\nauth_plugin /mosquitto/go-auth.so\n"
	cases := []struct{ name, text, want string }{
		{"unknown plugin", "listener 0 127.0.0.1\nplugin /usr/lib/mosquitto_other.so\n",
			`midge.conf:2: plugin: plugin "/usr/lib/mosquitto_other.so" is not supported by midge`},
		{"option before plugin", "auth_opt_backends http\n", "midge.conf:1: auth_opt_backends: an option with no plugin"},
		{"dynsec without its file", dynsec, "midge.conf:2: plugin: dynamic security needs plugin_opt_config_file"},
		{"dynsec file missing", dynsec + "plugin_opt_config_file /nonexistent/dynsec.json\n",
			"midge.conf:3: plugin_opt_config_file: dynsec: open /nonexistent/dynsec.json"},
		{"dynsec file not JSON", dynsec + "plugin_opt_config_file " + bad + "\n", "midge.conf:3: plugin_opt_config_file: dynsec: " + bad + ": not valid JSON"},
		{"go-auth backend not served", goauth + "auth_opt_backends postgres\n",
			`midge.conf:3: auth_opt_backends: backend "postgres" is not supported by midge (it serves http and files)`},
		{"go-auth http incomplete", goauth + "auth_opt_backends http\nauth_opt_http_host 127.0.0.1\n",
			"midge.conf:3: auth_opt_backends: the http backend needs auth_opt_http_port, auth_opt_http_getuser_uri, auth_opt_http_aclcheck_uri"},
		{"go-auth option not served", goauth + "auth_opt_backends files\nauth_opt_password_path /x\nauth_opt_redis_host h\n",
			"midge.conf:5: auth_opt_redis_host: not supported by midge's go-auth"},
		{"go-auth bad timeout", goauth + "auth_opt_backends http\nauth_opt_http_host h\nauth_opt_http_port 1\nauth_opt_http_getuser_uri /u\nauth_opt_http_aclcheck_uri /a\nauth_opt_http_timeout soon\n",
			`midge.conf:8: auth_opt_http_timeout: expected seconds > 0, got "soon"`},
		{"go-auth password file bad", goauth + "auth_opt_backends files\nauth_opt_password_path " + bad + "\n",
			"midge.conf:4: auth_opt_password_path: " + bad + ":1: expected username:hash"},
		{"go-auth redis cache", goauth + "auth_opt_backends files\nauth_opt_password_path " + pw + "\nauth_opt_cache true\nauth_opt_cache_type redis\n",
			`midge.conf:6: auth_opt_cache_type: "redis" is not supported by midge`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := filepath.Join(dir, "midge.conf")
			writeFile(t, conf, c.text)
			out, err := exec.Command(midgeBin, "-c", conf).CombinedOutput()
			if err == nil {
				t.Fatalf("midge started with a bad config:\n%s", out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("output %q does not name %q", out, c.want)
			}
		})
	}
}
