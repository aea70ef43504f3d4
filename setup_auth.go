package main

import (
	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/auth/dynsec"
	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/session"
)

// authorizer chains a security scope's providers as mosquitto chains
// plugins: the plugin lines in order, then password_file and acl_file.
func (st *setup) authorizer(sec *config.Security) (*auth.Authorizer, error) {
	var providers []auth.Provider
	for _, p := range sec.Plugins {
		pr, err := st.provider(p, sec)
		if err != nil {
			return nil, err
		}
		providers = append(providers, pr)
	}
	if sec.PasswordFile != "" || sec.ACLFile != "" {
		f, err := auth.NewFiles(sec.PasswordFile, sec.ACLFile)
		if err != nil {
			return nil, err
		}
		providers = append(providers, f)
	}
	a := auth.New(sec.AllowAnonymous, nil, providers...)
	st.authz = append(st.authz, a)
	return a, nil
}

// provider makes the provider a plugin line names.
func (st *setup) provider(p *config.Plugin, sec *config.Security) (auth.Provider, error) {
	switch p.Kind {
	case config.PluginDynsec:
		o, ok := p.Opt("config_file")
		if !ok || o.Value == "" {
			return nil, p.Errorf("dynamic security needs plugin_opt_config_file")
		}
		d, err := dynsec.Open(o.Value, st.logger)
		if err != nil {
			return nil, o.Errorf("%v", err)
		}
		st.onBroker = append(st.onBroker, func(b *session.Broker) {
			d.Kick = func(username string, anonymous bool) { b.KickUsername(username, anonymous) }
			d.Publish = func(topic string, payload []byte) { b.Publish(topic, payload, 0, false) }
		})
		st.onClose = append(st.onClose, func() {
			if err := d.Close(); err != nil {
				st.logger.Printf("Error: dynsec: %v", err)
			}
		})
		return d, nil
	case config.PluginPasswordFile:
		o, ok := p.Opt("password_file")
		if !ok || o.Value == "" {
			return nil, p.Errorf("mosquitto_password_file needs plugin_opt_password_file")
		}
		f, err := auth.NewFiles(o.Value, "")
		if err != nil {
			return nil, o.Errorf("%v", err)
		}
		return f, nil
	case config.PluginACLFile:
		o, ok := p.Opt("acl_file")
		if !ok || o.Value == "" {
			return nil, p.Errorf("mosquitto_acl_file needs plugin_opt_acl_file")
		}
		f, err := auth.NewFiles("", o.Value)
		if err != nil {
			return nil, o.Errorf("%v", err)
		}
		return f, nil
	case config.PluginGoAuth:
		return st.goAuth(p, sec.AllowSpecialChars)
	}
	return nil, p.Errorf("plugin %q is not supported by midge", p.Path)
}

// closeAuth writes what the providers have not saved yet (at shutdown).
func (st *setup) closeAuth() {
	for _, f := range st.onClose {
		f()
	}
}

// attach gives the auth providers the broker they serve: its counters, and
// dynamic security's kicks and responses.
func (st *setup) attach(b *session.Broker) {
	for _, a := range st.authz {
		a.SetStats(&b.Stats)
	}
	for _, f := range st.onBroker {
		f(b)
	}
}
