package auth

import (
	"strings"
	"testing"
)

// aclFile exercises every rule kind; the cases below are mosquitto 2.0's
// documented semantics (mosquitto.conf(5), acl_file), and the subscribe and
// deny rows were checked against Debian's mosquitto 2.0.11.
const aclFile = `# anonymous clients
topic read public/#
topic deny public/secret
topic $SYS/broker/uptime

user alice
topic readwrite home/#
topic deny home/vault
topic write logs/+
user bob smith
topic read  home/kitchen temp
pattern write devices/%c/state
pattern read users/%u/#
pattern deny users/%u/blocked
pattern readwrite shared
`

func TestACLAllowed(t *testing.T) {
	a, err := ParseACL("acl", strings.NewReader(aclFile))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		client string
		user   string
		anon   bool
		topic  string
		access Access
		want   bool
	}{
		{"anonymous reads its rules", "c1", "", true, "public/news", Read, true},
		{"'#' matches the parent level", "c1", "", true, "public", Read, true},
		{"anonymous read-only", "c1", "", true, "public/news", Write, false},
		{"anonymous deny wins", "c1", "", true, "public/secret", Read, false},
		{"anonymous no rule", "c1", "", true, "home/kitchen", Read, false},
		{"$ topic needs a $ rule", "c1", "", true, "$SYS/broker/uptime", Read, true},
		{"$ rule default readwrite", "c1", "", true, "$SYS/broker/uptime", Write, true},
		{"user rules are not anonymous rules", "c2", "alice", false, "public/news", Read, false},
		{"user readwrite", "c2", "alice", false, "home/kitchen/light", Write, true},
		{"user deny wins over earlier grant", "c2", "alice", false, "home/vault", Read, false},
		{"user deny is exact match", "c2", "alice", false, "home/vault/door", Read, true},
		{"user write-only", "c2", "alice", false, "logs/app", Write, true},
		{"user write-only refuses read", "c2", "alice", false, "logs/app", Read, false},
		{"'+' is one level", "c2", "alice", false, "logs/app/x", Write, false},
		{"username with space", "c3", "bob smith", false, "home/kitchen temp", Read, true},
		{"filter with space", "c3", "bob smith", false, "home/kitchen", Read, false},
		{"unknown user gets patterns only", "c4", "carol", false, "home/kitchen", Read, false},
		{"%c pattern", "dev7", "carol", false, "devices/dev7/state", Write, true},
		{"%c pattern other client", "dev7", "carol", false, "devices/dev8/state", Write, false},
		{"%c pattern for anonymous", "dev7", "", true, "devices/dev7/state", Write, true},
		{"%u pattern", "c5", "carol", false, "users/carol/inbox", Read, true},
		{"%u pattern never for anonymous", "c5", "", true, "users//inbox", Read, false},
		{"pattern deny wins", "c5", "carol", false, "users/carol/blocked", Read, false},
		{"patterns apply after user rules", "c2", "alice", false, "users/alice/x", Read, true},
		{"pattern without substitution", "c2", "alice", false, "shared", Write, true},
		{"'+' in client id refuses patterns", "dev+", "carol", false, "shared", Read, false},
		{"'#' in username refuses patterns", "c5", "car#", false, "shared", Read, false},
		{"user grant before the '+' check", "x#", "alice", false, "home/a", Read, true},
		{"subscribe always allowed", "c1", "", true, "nothing/#", Subscribe, true},
		{"'#' rule does not match $ topics", "c2", "alice", false, "$SYS/x", Read, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := a.Allowed(c.client, c.user, c.anon, c.topic, c.access); got != c.want {
				t.Fatalf("Allowed(%q, %q, anon=%v, %q, %v) = %v, want %v",
					c.client, c.user, c.anon, c.topic, c.access, got, c.want)
			}
		})
	}
}

func TestACLEmptyAndNil(t *testing.T) {
	var none *ACL
	if !none.Allowed("c", "u", false, "a/b", Write) {
		t.Fatal("nil ACL (no acl_file) must allow everything")
	}
	empty, err := ParseACL("acl", strings.NewReader("# nothing\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if empty.Allowed("c", "u", false, "a/b", Read) || empty.Allowed("c", "", true, "a/b", Write) {
		t.Fatal("an empty ACL file must refuse everything")
	}
}

func TestACLWildcardRoot(t *testing.T) {
	a, err := ParseACL("acl", strings.NewReader("user admin\ntopic #\ntopic $SYS/#\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"a", "a/b/c", "/", "$SYS/broker/load"} {
		if !a.Allowed("c", "admin", false, topic, Write) {
			t.Errorf("admin refused %q", topic)
		}
	}
}

func TestMatches(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+", "a/b", true},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"+/+", "/x", true},
		{"+", "/x", false},
		{"#", "a/b", true},
		{"a/#", "a", true},
		{"a/#", "ab", false},
		{"a/+/#", "a/b", true},
		{"+/b", "$x/b", false},
		{"$x/+", "$x/b", true},
		{"", "", true},
		{"a//b", "a//b", true},
	}
	for _, c := range cases {
		if got := matches(c.filter, c.topic); got != c.want {
			t.Errorf("matches(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestParseACLErrors(t *testing.T) {
	cases := []struct{ name, file, want string }{
		{"unknown keyword", "topik read a\n", `auth: acl:1: invalid line: expected user, topic or pattern, got "topik"`},
		{"bad access", "user u\ntopic all a/b\n", `auth: acl:2: invalid access "all" (expected read, write, readwrite or deny)`},
		{"missing topic", "topic\n", "auth: acl:1: missing topic after `topic`"},
		{"missing user", "user   \n", "auth: acl:1: missing username after `user`"},
		{"wildcard inside level", "pattern read a/b#\n", `auth: acl:1: invalid ACL topic "a/b#": wildcard must occupy a whole level`},
		{"hash not last", "\n# c\ntopic read a/#/b\n", `auth: acl:3: invalid ACL topic "a/#/b": '#' must be the last level`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseACL("acl", strings.NewReader(c.file))
			if err == nil || err.Error() != c.want {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
		})
	}
}

func BenchmarkACLAllowedPattern(b *testing.B) {
	a, err := ParseACL("acl", strings.NewReader(aclFile))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		a.Allowed("dev7", "carol", false, "devices/dev7/state", Write)
	}
}

// TestMatchesPatternAgreesWithSubstitute checks the allocation-free pattern
// matcher against the plain one on every pairing of a set of filters, names
// and topics.
func TestMatchesPatternAgreesWithSubstitute(t *testing.T) {
	filters := []string{"%c", "%u", "a/%c", "a/%c/#", "%c/+", "+/%u/#", "a/#", "+",
		"#", "$SYS/%c", "a/%c/b", "%u/%c", "a/+/%c", "%c/"}
	names := []string{"dev", "", "a/b", "$x", "a"}
	topics := []string{"dev", "a/dev", "a/dev/x", "a/dev/x/y", "dev/x", "a/a/b", "a/b",
		"a/b/b", "$SYS/dev", "$x/y", "a", "", "/", "a/", "dev/", "a/a/b/c", "x/a/b/z"}
	for _, f := range filters {
		levels := strings.Split(f, "/")
		for _, c := range names {
			for _, u := range names {
				for _, topic := range topics {
					want := matches(substitute(levels, c, u), topic)
					if got := matchesPattern(levels, c, u, topic); got != want {
						t.Errorf("filter %q c=%q u=%q topic %q: matchesPattern %v, matches %v", f, c, u, topic, got, want)
					}
				}
			}
		}
	}
}

func FuzzMatchesPattern(f *testing.F) {
	f.Add("a/%c/#", "dev", "user", "a/dev/x")
	f.Add("+/%u", "c", "a/b", "x/a/b")
	f.Fuzz(func(t *testing.T, filter, clientID, username, topic string) {
		// Allowed refuses patterns to names holding wildcards before matching.
		if checkFilter(filter) != nil || strings.ContainsAny(clientID+username, "+#") {
			return
		}
		levels := strings.Split(filter, "/")
		want := matches(substitute(levels, clientID, username), topic)
		if got := matchesPattern(levels, clientID, username, topic); got != want {
			t.Fatalf("filter %q c=%q u=%q topic %q: matchesPattern %v, matches %v", filter, clientID, username, topic, got, want)
		}
	})
}

// TestDollarWritable: mosquitto's built-in rule for publishing to $ topics
// (its 03-publish-dollar-v5 test): $SYS is refused but for a bridge state
// notification, $share always; other $ topics are the ACL file's business.
func TestDollarWritable(t *testing.T) {
	for topic, want := range map[string]bool{
		"$SYS/broker/uptime":                false,
		"$SYS":                              false,
		"$SYS/broker/connection/me":         false,
		"$SYS/broker/connection/me/state":   true,
		"$SYS/broker/connection/me/state/x": false,
		"$SYSX/y":                           false,
		"$share/group/topic":                false,
		"$other/topic":                      true,
		"plain/topic":                       true,
	} {
		if got := dollarWritable(topic); got != want {
			t.Errorf("dollarWritable(%q) = %v, want %v", topic, got, want)
		}
	}
}
