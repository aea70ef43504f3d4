package auth

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Access is what a client asks to do with a topic.
type Access uint8

const (
	// Read is receiving a message published on a topic (checked on delivery,
	// retained messages included).
	Read Access = 1 << iota
	// Write is publishing to a topic.
	Write
	// Subscribe is sending SUBSCRIBE for a filter. mosquitto 2.0's acl_file
	// grants every subscription (its SUBACK says granted) and enforces read
	// rules on each delivered message instead; Allowed reproduces that.
	Subscribe
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Subscribe:
		return "subscribe"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// deny is a rule's access when the ACL line says `deny`.
const deny Access = 0

type rule struct {
	access  Access
	filter  string   // topic rules: the filter as written
	levels  []string // pattern rules: the filter split at '/'
	usesUID bool     // pattern rules: a level is %u
}

// ruleSet is one list of rules: denials are kept apart because any matching
// denial wins over any grant in the same list (mosquitto 2.0 checks them
// first).
type ruleSet struct {
	deny, allow []rule
}

func (s *ruleSet) add(r rule) {
	if r.access == deny {
		s.deny = append(s.deny, r)
	} else {
		s.allow = append(s.allow, r)
	}
}

// ACL is a loaded mosquitto ACL file. It is read-only after loading and safe
// for concurrent use. A nil *ACL allows everything (no acl_file configured).
type ACL struct {
	anonymous ruleSet            // `topic` lines before any `user` line
	users     map[string]ruleSet // `topic` lines after `user NAME`
	patterns  ruleSet            // `pattern` lines, for every client
}

// LoadACL reads a mosquitto ACL file. Errors name the file and line.
func LoadACL(path string) (*ACL, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	return ParseACL(path, f)
}

// ParseACL reads an ACL file from r; name is used in errors. The syntax is
// mosquitto 2.0's: `user NAME`, `topic [read|write|readwrite|deny] FILTER`,
// `pattern [read|write|readwrite|deny] FILTER`, '#' comments, blank lines.
// The filter is the rest of the line, so it may contain spaces when the
// access word is given.
func ParseACL(name string, r io.Reader) (*ACL, error) {
	a := &ACL{users: make(map[string]ruleSet)}
	var user *string // nil until the first `user` line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), " \t\r\n\v\f")
		if strings.HasPrefix(text, "#") {
			continue
		}
		word, rest := cutWord(text)
		errorf := func(format string, args ...any) error {
			return fmt.Errorf("auth: %s:%d: "+format, append([]any{name, line}, args...)...)
		}
		switch word {
		case "":
			continue
		case "user":
			if rest == "" {
				return nil, errorf("missing username after `user`")
			}
			u := rest
			user = &u
		case "topic", "pattern":
			access, filter := Read|Write, rest
			if w, f := cutWord(rest); f != "" {
				switch w {
				case "read":
					access = Read
				case "write":
					access = Write
				case "readwrite":
					access = Read | Write
				case "deny":
					access = deny
				default:
					return nil, errorf("invalid access %q (expected read, write, readwrite or deny)", w)
				}
				filter = f
			}
			if filter == "" {
				return nil, errorf("missing topic after `%s`", word)
			}
			if err := checkFilter(filter); err != nil {
				return nil, errorf("invalid ACL topic %q: %v", filter, err)
			}
			rl := rule{access: access, filter: filter}
			switch {
			case word == "pattern":
				rl.levels = strings.Split(filter, "/")
				for _, l := range rl.levels {
					rl.usesUID = rl.usesUID || l == "%u"
				}
				a.patterns.add(rl)
			case user == nil:
				a.anonymous.add(rl)
			default:
				s := a.users[*user]
				s.add(rl)
				a.users[*user] = s
			}
		default:
			return nil, errorf("invalid line: expected user, topic or pattern, got %q", word)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: %s:%d: %w", name, line+1, err)
	}
	return a, nil
}

// cutWord splits off the first space-separated word and trims what follows.
func cutWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.Trim(s[i:], " \t")
}

// checkFilter validates a topic filter: '+' and '#' stand alone in their
// level and '#' is last [MQTT-4.7.1-1] [MQTT-4.7.1-2].
func checkFilter(f string) error {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return fmt.Errorf("wildcard must occupy a whole level")
		}
		if l == "#" && i != len(levels)-1 {
			return fmt.Errorf("'#' must be the last level")
		}
	}
	return nil
}

// Allowed reports whether the client may perform access on topic, with
// mosquitto 2.0's acl_file semantics:
//   - Subscribe is always allowed; Read is then checked on each delivery.
//   - The client's own list is the `topic` rules after `user USERNAME`, or,
//     for an anonymous client (no username), the rules before any `user`
//     line. A matching deny there refuses; a matching grant allows.
//   - Otherwise `pattern` rules apply, with %c and %u standing for the
//     client id and username as whole levels; a pattern using %u never
//     applies to an anonymous client. Patterns are refused outright to a
//     client whose username or client id holds '+' or '#'. A matching deny
//     pattern refuses; a matching grant allows.
//   - Anything not granted is refused.
//   - A topic starting with '$' is only matched by rules starting with '$'
//     [MQTT-4.7.2-1].
//
// topic is a topic name for Read and Write.
func (a *ACL) Allowed(clientID, username string, anonymous bool, topic string, access Access) bool {
	if a == nil || access == Subscribe {
		return true
	}
	own := a.anonymous
	if !anonymous {
		own = a.users[username]
	}
	for _, r := range own.deny {
		if matches(r.filter, topic) {
			return false
		}
	}
	for _, r := range own.allow {
		if r.access&access != 0 && matches(r.filter, topic) {
			return true
		}
	}
	if len(a.patterns.deny)+len(a.patterns.allow) == 0 {
		return false
	}
	// A '+' or '#' in a substituted name would widen the rule (CVE-2017-7650).
	if strings.ContainsAny(clientID, "+#") || (!anonymous && strings.ContainsAny(username, "+#")) {
		return false
	}
	for _, r := range a.patterns.deny {
		if (!r.usesUID || !anonymous) && matchesPattern(r.levels, clientID, username, topic) {
			return false
		}
	}
	for _, r := range a.patterns.allow {
		if r.access&access != 0 && (!r.usesUID || !anonymous) &&
			matchesPattern(r.levels, clientID, username, topic) {
			return true
		}
	}
	return false
}

// matchesPattern is matches(substitute(levels, clientID, username), topic)
// without building the substituted filter: it runs on every delivery.
func matchesPattern(levels []string, clientID, username, topic string) bool {
	value := func(l string) string {
		switch l {
		case "%c":
			return clientID
		case "%u":
			return username
		}
		return l
	}
	first := value(levels[0])
	if (len(topic) > 0 && topic[0] == '$') != (len(first) > 0 && first[0] == '$') {
		return false
	}
	for i, l := range levels {
		last := i == len(levels)-1
		// endsHere: the topic ran out; only a final "/#" still matches it.
		endsHere := i+2 == len(levels) && levels[i+1] == "#"
		if l == "#" {
			return true
		}
		var rest string
		if l == "+" {
			var more bool
			if _, rest, more = strings.Cut(topic, "/"); !more {
				return last || endsHere
			}
		} else {
			v := value(l)
			if !strings.HasPrefix(topic, v) {
				return false
			}
			rest = topic[len(v):]
			if rest == "" {
				return last || endsHere
			}
			if rest[0] != '/' {
				return false
			}
			rest = rest[1:]
		}
		if last {
			return false
		}
		topic = rest
	}
	return false
}

// substitute puts the client id and username in the levels that are exactly
// %c or %u (mosquitto.conf: "the substitution pattern must be the only text
// for that level of hierarchy"). Tests check matchesPattern against it.
func substitute(levels []string, clientID, username string) string {
	var b strings.Builder
	for i, l := range levels {
		if i > 0 {
			b.WriteByte('/')
		}
		switch l {
		case "%c":
			b.WriteString(clientID)
		case "%u":
			b.WriteString(username)
		default:
			b.WriteString(l)
		}
	}
	return b.String()
}

// matches reports whether topic name matches filter, with '+' matching one
// level and '#' the rest including the parent level [MQTT-4.7.1-2], and
// wildcards at the first level not matching topics starting with '$'
// [MQTT-4.7.2-1].
func matches(filter, topic string) bool {
	if (len(topic) > 0 && topic[0] == '$') != (len(filter) > 0 && filter[0] == '$') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a": the rest of the filter must be exactly "#".
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// MatchTopic reports whether topic name matches filter (mosquitto's
// mosquitto_topic_matches_sub), for other providers' rules.
func MatchTopic(filter, topic string) bool { return matches(filter, topic) }
