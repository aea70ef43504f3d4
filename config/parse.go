package config

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Parse reads a mosquitto.conf file, following include_dir. Errors name the
// file, line, key and what is wrong:
//
//	midge.conf:12: max_queued_messages: expected a non-negative integer, got "x"
func Parse(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	p := newParser(path)
	if err := p.read(path, f, 0); err != nil {
		return nil, err
	}
	return p.finish()
}

// ParseReader reads a configuration from r; name is used in errors and to
// refuse an include_dir holding the main file. A relative include_dir is
// taken from the working directory, as mosquitto does.
func ParseReader(name string, r io.Reader) (*Config, error) {
	p := newParser(name)
	if err := p.read(name, r, 0); err != nil {
		return nil, err
	}
	return p.finish()
}

type parser struct {
	c        *Config
	mainFile string
	cur      *Listener // the listener being configured; nil before the first `listener`
	def      *Listener // the default listener, configured by keys before any `listener`
	// securityAt is where the first security option was set: after it,
	// per_listener_settings may no longer change.
	securityAt *Pos
	logTypeSet bool
	logDestSet bool
	logFileSet bool
	bridge     *Bridge // the `connection` block being configured
	lastPlugin *Plugin // the plugin that plugin_opt_* lines configure
}

func newParser(mainFile string) *parser {
	return &parser{c: newConfig(), mainFile: mainFile, def: defaultListener()}
}

// line is one `key value...` line being applied.
type line struct {
	pos   Pos
	key   string
	value string // the rest of the line, blanks trimmed
}

func (l *line) errorf(format string, args ...any) error {
	return &Error{Pos: l.pos, Key: l.key, Msg: fmt.Sprintf(format, args...)}
}

// read parses one file; level is 0 for the main file and 1 for included ones.
func (p *parser) read(name string, r io.Reader, level int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		text := strings.Trim(sc.Text(), " \t\r")
		// mosquitto.conf(5): a '#' as the very first character makes a comment.
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, value, _ := strings.Cut(text, " ")
		if i := strings.IndexByte(key, '\t'); i >= 0 {
			key, value = text[:i], text[i+1:]
		}
		l := &line{pos: Pos{File: name, Line: n}, key: key, value: strings.Trim(value, " \t")}
		if err := p.apply(l, level); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return &Error{Pos: Pos{File: name, Line: n + 1}, Msg: err.Error()}
	}
	return nil
}

func (p *parser) apply(l *line, level int) error {
	if l.key == "include_dir" {
		return p.includeDir(l, level)
	}
	if h, ok := handlers[l.key]; ok {
		return h(p, l)
	}
	if ok, err := p.bridgeKey(l); ok {
		return err
	}
	if h, ok := pluginHandler(l.key); ok {
		return h(p, l)
	}
	if isMosquittoKey(l.key) {
		return l.errorf("mosquitto key not supported by midge")
	}
	return &Error{Pos: l.pos, Msg: fmt.Sprintf("unknown configuration key %q", l.key)}
}

// listener returns the listener that listener-scoped keys configure: the
// current `listener` block, or the default listener before the first one.
func (p *parser) listener(l *line) *Listener {
	t := p.cur
	if t == nil {
		t = p.def
		if t.keys == 0 {
			t.Pos = l.pos
		}
	}
	t.keys++
	return t
}

// security returns the options security keys set: the current listener's
// when per_listener_settings is true, else the global ones.
func (p *parser) security(l *line) *Security {
	if p.securityAt == nil {
		pos := l.pos
		p.securityAt = &pos
	}
	if p.c.PerListenerSettings {
		return &p.listener(l).Security
	}
	return &p.c.Security
}

func (p *parser) use(l *line, f Feature) {
	p.c.uses = append(p.c.uses, use{pos: l.pos, key: l.key, feature: f})
}

func (p *parser) finish() (*Config, error) {
	if p.def.keys > 0 {
		p.def.isDefault = true
		p.c.Listeners = append(p.c.Listeners, p.def)
	}
	c := p.c
	if err := p.finishBridges(); err != nil {
		return nil, err
	}
	seen := make(map[string]*Listener)
	for _, l := range c.Listeners {
		if (l.CertFile == "") != (l.KeyFile == "") {
			return nil, &Error{Pos: l.Pos, Key: "listener", Msg: "certfile and keyfile must be given together"}
		}
		if l.RequireCertificate && l.CAFile == "" && l.CAPath == "" {
			return nil, &Error{Pos: l.Pos, Key: "listener", Msg: "require_certificate needs cafile or capath"}
		}
		if l.CRLFile != "" && !l.RequireCertificate {
			return nil, &Error{Pos: l.Pos, Key: "listener", Msg: "crlfile needs require_certificate true"}
		}
		port := l.Port
		if port == 0 && l.isDefault {
			port = 1883
		}
		if path := l.UnixPath(); path != "" {
			if prev, ok := seen[path]; ok {
				return nil, &Error{Pos: l.Pos, Key: "listener", Msg: fmt.Sprintf("socket %s is also configured at %s", path, prev.Pos)}
			}
			seen[path] = l
			continue
		}
		if port == 0 {
			continue // midge's "pick a free port"
		}
		addr := net.JoinHostPort(l.Bind, strconv.Itoa(port))
		if prev, ok := seen[addr]; ok {
			what := "listener " + addr
			if l.isDefault {
				what += " (the default listener, from keys before the first `listener` line)"
			}
			return nil, &Error{Pos: l.Pos, Key: "listener", Msg: fmt.Sprintf("%s is also configured at %s", what, prev.Pos)}
		}
		seen[addr] = l
	}
	if err := c.Cluster.check(); err != nil {
		return nil, err
	}
	c.finish()
	return c, nil
}

func (p *parser) includeDir(l *line, level int) error {
	if level > 0 {
		return l.errorf("only allowed in the main configuration file")
	}
	if l.value == "" {
		return l.errorf("missing value")
	}
	entries, err := os.ReadDir(l.value)
	if err != nil {
		return l.errorf("%v", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".conf") && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Slice(names, func(i, j int) bool { return includeLess(names[i], names[j]) })
	mainAbs, _ := filepath.Abs(p.mainFile)
	for _, n := range names {
		path := filepath.Join(l.value, n)
		if abs, _ := filepath.Abs(path); abs == mainAbs {
			return l.errorf("directory %q holds the main configuration file", l.value)
		}
	}
	for _, n := range names {
		path := filepath.Join(l.value, n)
		f, err := os.Open(path)
		if err != nil {
			return l.errorf("%v", err)
		}
		err = p.read(path, f, level+1)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// includeLess is mosquitto's include_dir order: case-sensitive alphabetical
// with the upper case of a letter just before its lower case (00.conf,
// 01.conf, A.conf, a.conf, B.conf, b.conf).
func includeLess(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ka, kb := includeKey(a[i]), includeKey(b[i])
		if ka != kb {
			return ka < kb
		}
	}
	return len(a) < len(b)
}

func includeKey(c byte) int {
	switch {
	case c >= 'a' && c <= 'z':
		return int(c-'a'+'A')*2 + 1
	case c >= 'A' && c <= 'Z':
		return int(c) * 2
	}
	return int(c) * 2
}

// Value parsers. Each takes the whole value and rejects extra words.

func (l *line) one() (string, error) {
	switch f := strings.Fields(l.value); len(f) {
	case 0:
		return "", l.errorf("missing value")
	case 1:
		return f[0], nil
	default:
		return "", l.errorf("expected one value, got %q", l.value)
	}
}

func (l *line) str() (string, error) {
	if l.value == "" {
		return "", l.errorf("missing value")
	}
	return l.value, nil
}

// boolean accepts what mosquitto does: true, false, 1, 0.
func (l *line) boolean() (bool, error) {
	v, err := l.one()
	if err != nil {
		return false, err
	}
	switch v {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, l.errorf("expected true or false, got %q", v)
}

func (l *line) intRange(min, max int64) (int64, error) {
	v, err := l.one()
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseInt(v, 10, 64)
	if perr == nil && n >= min && n <= max {
		return n, nil
	}
	if min == 0 && max >= maxInt {
		return 0, l.errorf("expected a non-negative integer, got %q", v)
	}
	if max >= maxInt {
		return 0, l.errorf("expected an integer >= %d, got %q", min, v)
	}
	return 0, l.errorf("expected an integer from %d to %d, got %q", min, max, v)
}

const maxInt = 1<<31 - 1

func (l *line) nonNegative() (int, error) {
	n, err := l.intRange(0, maxInt)
	return int(n), err
}

// expiration parses persistent_client_expiration: an integer > 0 followed by
// h, d, w, m or y (hour, day, week, 30-day month, 365-day year).
func (l *line) expiration() (time.Duration, error) {
	v, err := l.one()
	if err != nil {
		return 0, err
	}
	units := map[byte]time.Duration{'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour,
		'm': 30 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}
	if len(v) >= 2 {
		if unit, ok := units[v[len(v)-1]]; ok {
			n, err := strconv.ParseInt(v[:len(v)-1], 10, 32)
			if err == nil && n > 0 {
				return time.Duration(n) * unit, nil
			}
		}
	}
	return 0, l.errorf("expected a duration like 2h, 14d, 1w, 1m or 1y, got %q", v)
}
