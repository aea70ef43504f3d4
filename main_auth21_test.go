package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/midge-mqtt/midge/codec"
)

// TestMosquitto21FilePlugins: mosquitto 2.1's names for the password and
// ACL files (plugin mosquitto_password_file / mosquitto_acl_file with their
// plugin_opt_ keys) decide as password_file and acl_file do.
func TestMosquitto21FilePlugins(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	pw, acl := filepath.Join(dir, "pw"), filepath.Join(dir, "acl")
	mosquittoPasswd(t, pw, true, "alice", "secret")
	writeFile(t, acl, "user alice\ntopic readwrite alice/#\n")
	for _, form := range []string{
		"password_file %s\nacl_file %s\n",
		"plugin /usr/lib/mosquitto_password_file.so\nplugin_opt_password_file %s\nplugin mosquitto_acl_file\nplugin_opt_acl_file %s\n",
	} {
		port := freePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		conf := filepath.Join(t.TempDir(), "m.conf")
		writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\n"+form, port, pw, acl))
		startMidge(t, addr, "-c", conf)
		if _, code := dial(t, addr, codec.Version5, "x", "alice", "wrong", false); code != codec.NotAuthorized { // mosquitto 2.0: a wrong password is "not authorised"
			t.Errorf("%q: wrong password: %#x", form, code)
		}
		if _, code := dial(t, addr, codec.Version5, "y", "", "", true); code != codec.NotAuthorized {
			t.Errorf("%q: anonymous: %#x", form, code)
		}
		c, code := dial(t, addr, codec.Version5, "a", "alice", "secret", false)
		if code != 0 {
			t.Fatalf("%q: alice: %#x", form, code)
		}
		if got := pubCode(t, c, "alice/1"); got != 0 && got != codec.NoMatchingSubscribers {
			t.Errorf("%q: alice/1: %#x", form, got)
		}
		if got := pubCode(t, c, "bob/1"); got != codec.NotAuthorized {
			t.Errorf("%q: bob/1: %#x", form, got)
		}
	}
}
