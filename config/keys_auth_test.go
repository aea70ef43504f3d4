package config

import (
	"strings"
	"testing"
)

// TestPluginKeys: plugin lines and their options, in mosquitto's scopes.
func TestPluginKeys(t *testing.T) {
	cases := []struct {
		name, file string
		check      func(t *testing.T, c *Config)
	}{
		{"dynsec global", "listener 1883\nplugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\nplugin_opt_config_file /etc/dynsec.json\n",
			func(t *testing.T, c *Config) {
				p := c.Security.Plugins
				if len(p) != 1 || p[0].Kind != PluginDynsec {
					t.Fatalf("plugins %+v", p)
				}
				if o, ok := p[0].Opt("config_file"); !ok || o.Value != "/etc/dynsec.json" || o.Pos.Line != 3 {
					t.Fatalf("option %+v", o)
				}
			}},
		{"go-auth per listener", "per_listener_settings true\nlistener 1883\nauth_plugin /mosquitto/go-auth.so\nauth_opt_backends http\nauth_opt_http_port 80\nlistener 1884\n",
			func(t *testing.T, c *Config) {
				if p := c.Listeners[0].Security.Plugins; len(p) != 1 || p[0].Kind != PluginGoAuth || len(p[0].Opts) != 2 {
					t.Fatalf("listener 1883 plugins %+v", p)
				}
				if p := c.Listeners[1].Security.Plugins; len(p) != 0 {
					t.Fatalf("listener 1884 plugins %+v", p)
				}
			}},
		{"2.1 names", "listener 1883\nplugin mosquitto_password_file\nplugin_opt_password_file /pw\nplugin /lib/mosquitto_acl_file.so\nplugin_opt_acl_file /acl\n",
			func(t *testing.T, c *Config) {
				p := c.Security.Plugins
				if len(p) != 2 || p[0].Kind != PluginPasswordFile || p[1].Kind != PluginACLFile {
					t.Fatalf("plugins %+v", p)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseReader("m.conf", strings.NewReader(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
