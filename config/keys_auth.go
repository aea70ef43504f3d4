package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// PluginKind is an authentication plugin midge serves natively (no shared
// object is loaded: the plugin's path only names which one).
type PluginKind string

const (
	// PluginDynsec is mosquitto's mosquitto_dynamic_security.so
	// (plugin_opt_config_file).
	PluginDynsec PluginKind = "dynamic-security"
	// PluginGoAuth is mosquitto-go-auth's go-auth.so (auth_opt_backends
	// http and files).
	PluginGoAuth PluginKind = "go-auth"
	// PluginPasswordFile and PluginACLFile are mosquitto 2.1's names for
	// password_file and acl_file (plugin_opt_password_file, _acl_file).
	PluginPasswordFile PluginKind = "password-file"
	PluginACLFile      PluginKind = "acl-file"
)

// Plugin is one `plugin` (or `auth_plugin`, `global_plugin`) line and the
// `plugin_opt_*` / `auth_opt_*` lines that follow it.
type Plugin struct {
	Pos  Pos
	Key  string // the key used: plugin, auth_plugin or global_plugin
	Path string
	Kind PluginKind
	Opts []PluginOpt
}

// PluginOpt is one option line; Name is without its plugin_opt_ or
// auth_opt_ prefix.
type PluginOpt struct {
	Pos   Pos
	Key   string // as written, for errors
	Name  string
	Value string
}

// Opt returns the value of the last option called name, and whether it was set.
func (p *Plugin) Opt(name string) (PluginOpt, bool) {
	for i := len(p.Opts) - 1; i >= 0; i-- {
		if p.Opts[i].Name == name {
			return p.Opts[i], true
		}
	}
	return PluginOpt{}, false
}

// Errorf makes a configuration error at the option's line.
func (o PluginOpt) Errorf(format string, args ...any) error {
	return &Error{Pos: o.Pos, Key: o.Key, Msg: fmt.Sprintf(format, args...)}
}

// Errorf makes a configuration error at the plugin's line.
func (p *Plugin) Errorf(format string, args ...any) error {
	return &Error{Pos: p.Pos, Key: p.Key, Msg: fmt.Sprintf(format, args...)}
}

// pluginKind names the plugin a path stands for: mosquitto's own by their
// file names, in any directory, with or without ".so".
func pluginKind(path string) (PluginKind, bool) {
	base := strings.TrimSuffix(filepath.Base(path), ".so")
	switch {
	case base == "mosquitto_dynamic_security":
		return PluginDynsec, true
	case base == "go-auth" || strings.HasSuffix(base, "go-auth"):
		return PluginGoAuth, true
	case base == "mosquitto_password_file":
		return PluginPasswordFile, true
	case base == "mosquitto_acl_file":
		return PluginACLFile, true
	}
	return "", false
}

func init() {
	for _, k := range []string{"plugin", "auth_plugin", "global_plugin"} {
		handlers[k] = (*parser).pluginKey
	}
}

func (p *parser) pluginKey(l *line) error {
	v, err := l.str()
	if err != nil {
		return err
	}
	kind, ok := pluginKind(v)
	if !ok {
		return l.errorf("plugin %q is not supported by midge (it serves mosquitto_dynamic_security, "+
			"go-auth's http and files backends, mosquitto_password_file and mosquitto_acl_file natively; "+
			"no shared object is loaded)", v)
	}
	s := &p.c.Security
	if l.key != "global_plugin" {
		s = p.security(l)
	}
	s.Plugins = append(s.Plugins, &Plugin{Pos: l.pos, Key: l.key, Path: v, Kind: kind})
	p.lastPlugin = s.Plugins[len(s.Plugins)-1]
	return nil
}

// pluginOptKey takes plugin_opt_* and auth_opt_* lines: options of the last
// plugin line, as in mosquitto.
func (p *parser) pluginOptKey(l *line) error {
	name := strings.TrimPrefix(strings.TrimPrefix(l.key, "plugin_opt_"), "auth_opt_")
	if p.lastPlugin == nil {
		return l.errorf("an option with no plugin (or auth_plugin) line before it")
	}
	if name == "" {
		return l.errorf("missing option name")
	}
	p.lastPlugin.Opts = append(p.lastPlugin.Opts, PluginOpt{Pos: l.pos, Key: l.key, Name: name, Value: l.value})
	return nil
}

// pluginHandler returns the handler of a plugin option key.
func pluginHandler(key string) (handler, bool) {
	if strings.HasPrefix(key, "plugin_opt_") || strings.HasPrefix(key, "auth_opt_") {
		return (*parser).pluginOptKey, true
	}
	return nil, false
}
