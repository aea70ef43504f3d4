package main

import (
	"errors"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/auth/goauth"
	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/session"
)

// goAuth makes mosquitto-go-auth's provider from its auth_opt_ lines; a bad
// option is reported at its line.
func (st *setup) goAuth(p *config.Plugin, allowSpecialChars bool) (auth.Provider, error) {
	var names []string
	for _, o := range p.Opts {
		names = append(names, o.Name)
	}
	opt := func(name string) (string, bool) {
		o, ok := p.Opt(name)
		return o.Value, ok
	}
	g, err := goauth.New(names, opt)
	var oe *goauth.OptError
	if errors.As(err, &oe) {
		if o, ok := p.Opt(oe.Name); ok {
			return nil, o.Errorf("%s", oe.Msg)
		}
		return nil, p.Errorf("%v", err)
	}
	if err != nil {
		return nil, p.Errorf("%v", err)
	}
	g.AllowSpecialChars = allowSpecialChars
	st.onBroker = append(st.onBroker, func(b *session.Broker) { g.SetStats(&b.Stats) })
	return g, nil
}
