package auth

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fixed vectors made with Debian's mosquitto_passwd 2.0.11
// (`mosquitto_passwd -b` and `-H sha512 -b`): user "alice" password "secret".
const (
	aliceV7 = "$7$101$QBtWgdoINMb3DkzB$rmG84bW/nivumpDyfE+/h6ffzNn8mTSfIOcAcb7tKmJj0MIyhefPsTpl2ZwBNif6JoIKmEpZ1uROABaGH7nGKg=="
	carolV6 = "$6$ABbFCLvD8+thbDGs$CEpO83230Ce3peVgYkn5tngAqxKMh/X4KlTcaMM32cwhjpwxZsVYZ8rctjMfP41r7cxbj4EiLE3THuIAanixhw==" // password "c"
)

// requireTool fails (never skips) when a Debian reference binary is missing.
func requireTool(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: run `make deps` (installs Debian's mosquitto and mosquitto-clients)", path)
	}
}

func TestParsePasswordsVectors(t *testing.T) {
	file := "# made by mosquitto_passwd\n\nalice:" + aliceV7 + "\n carol : " + carolV6 + " \n"
	p, err := ParsePasswords("pw", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 2 {
		t.Fatalf("Len = %d, want 2", p.Len())
	}
	cases := []struct {
		user, pass string
		nilPass    bool
		want       bool
	}{
		{"alice", "secret", false, true},
		{"alice", "Secret", false, false},
		{"alice", "", false, false},
		{"alice", "", true, false},
		{"carol", "c", false, true},
		{"carol", "cc", false, false},
		{"bob", "secret", false, false},
		{"", "", true, false},
	}
	for _, c := range cases {
		pass := []byte(c.pass)
		if c.nilPass {
			pass = nil
		}
		if got := p.Check([]byte(c.user), pass); got != c.want {
			t.Errorf("Check(%q, %q) = %v, want %v", c.user, c.pass, got, c.want)
		}
	}
}

func TestParsePasswordsErrors(t *testing.T) {
	cases := []struct{ name, file, want string }{
		{"plain text", "u:secret\n", `auth: pw:1: user "u": unknown password hash format (expected $7$ or $6$; a plain text file needs ` + "`midge passwd -U`)"},
		{"empty hash", "# c\nu:\n", `auth: pw:2: user "u": missing password hash`},
		{"empty user", ":" + aliceV7, `auth: pw:1: empty username`},
		{"unknown type", "u:$5$abc$def", `auth: pw:1: user "u": unknown password hash type $5$ (expected $7$ or $6$)`},
		{"short $7$", "u:$7$101$abc", `auth: pw:1: user "u": malformed $7$ hash: expected $7$ITERATIONS$SALT$HASH`},
		{"short $6$", "u:$6$abc", `auth: pw:1: user "u": malformed $6$ hash: expected $6$SALT$HASH`},
		{"zero iterations", "u:$7$0$QBtWgdoINMb3DkzB$x", `auth: pw:1: user "u": invalid hash iterations "0"`},
		{"bad iterations", "u:$7$x$QBtWgdoINMb3DkzB$x", `auth: pw:1: user "u": invalid hash iterations "x"`},
		{"bad salt", "u:$7$101$QBtW$" + strings.Split(aliceV7, "$")[4], `auth: pw:1: user "u": invalid salt: expected 12 bytes of base64`},
		{"bad hash", "u:$7$101$QBtWgdoINMb3DkzB$AAAA", `auth: pw:1: user "u": invalid hash: expected 64 bytes of base64`},
		{"trailing field", "u:" + aliceV7 + ":x", `auth: pw:1: user "u": invalid hash: expected 64 bytes of base64`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePasswords("pw", strings.NewReader(c.file))
			if err == nil || err.Error() != c.want {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
		})
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	cases := []struct {
		hash   Hash
		iter   int
		prefix string
	}{
		{SHA512PBKDF2, DefaultIterations, "$7$101$"},
		{SHA512PBKDF2, 5, "$7$5$"},
		{SHA512, 0, "$6$"},
	}
	for _, c := range cases {
		h, err := HashPasswordWith(c.hash, c.iter, []byte("pa ss"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(h, c.prefix) {
			t.Fatalf("hash %q does not start with %q", h, c.prefix)
		}
		p, err := ParsePasswords("pw", strings.NewReader("u:"+h+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if !p.Check([]byte("u"), []byte("pa ss")) || p.Check([]byte("u"), []byte("pass")) {
			t.Fatalf("%s: right password refused or wrong password accepted", h)
		}
	}
	if _, err := HashPasswordWith(SHA512PBKDF2, 0, nil); err == nil {
		t.Fatal("0 iterations accepted")
	}
	h1, _ := HashPassword([]byte("x"))
	h2, _ := HashPassword([]byte("x"))
	if h1 == h2 {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
}

// TestPasswordsFromMosquittoPasswd reads files written by Debian's
// mosquitto_passwd, in both of its formats.
func TestPasswordsFromMosquittoPasswd(t *testing.T) {
	const tool = "/usr/bin/mosquitto_passwd"
	requireTool(t, tool)
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	run := func(args ...string) {
		if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %v: %v\n%s", args, err, out)
		}
	}
	run("-c", "-b", file, "alice", "s3cret")
	run("-b", file, "bob", "pässwörd with spaces")
	run("-H", "sha512", "-b", file, "carol", "old-style")
	p, err := LoadPasswords(file)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		user, pass string
		want       bool
	}{
		{"alice", "s3cret", true},
		{"alice", "s3cret ", false},
		{"bob", "pässwörd with spaces", true},
		{"bob", "password with spaces", false},
		{"carol", "old-style", true},
		{"carol", "s3cret", false},
		{"dave", "s3cret", false},
	}
	for _, c := range cases {
		if got := p.Check([]byte(c.user), []byte(c.pass)); got != c.want {
			t.Errorf("Check(%q, %q) = %v, want %v", c.user, c.pass, got, c.want)
		}
	}
}

// freePort picks a free 127.0.0.1 port by listening on :0 and closing.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestMosquittoAcceptsMidgeHashes starts Debian's mosquitto with a password
// file written by HashPassword and connects with mosquitto_pub.
func TestMosquittoAcceptsMidgeHashes(t *testing.T) {
	const broker, pub = "/usr/sbin/mosquitto", "/usr/bin/mosquitto_pub"
	requireTool(t, broker)
	requireTool(t, pub)
	dir := t.TempDir()
	v7, err := HashPassword([]byte("right pass"))
	if err != nil {
		t.Fatal(err)
	}
	v6, err := HashPasswordWith(SHA512, 0, []byte("six"))
	if err != nil {
		t.Fatal(err)
	}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte("alice:"+v7+"\ncarol:"+v6+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	// `user root` keeps mosquitto from dropping to the mosquitto user, who
	// could not read the test's temp dir.
	body := "user root\nlistener " + strconv.Itoa(port) + " 127.0.0.1\nallow_anonymous false\npassword_file " + pwfile + "\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(broker, "-c", conf)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListening(t, port, log)

	cases := []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "right pass", true},
		{"alice", "wrong pass", false},
		{"carol", "six", true},
		{"carol", "seven", false},
		{"nobody", "right pass", false},
	}
	for _, c := range cases {
		out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", strconv.Itoa(port),
			"-u", c.user, "-P", c.pass, "-t", "t", "-m", "m").CombinedOutput()
		if (err == nil) != c.ok {
			t.Errorf("mosquitto_pub -u %s -P %q: err=%v ok=%v\n%s\nbroker log:\n%s", c.user, c.pass, err, c.ok, out, log.String())
		}
		if !c.ok && !strings.Contains(string(out), "not authorised") {
			t.Errorf("mosquitto_pub -u %s: want a 'not authorised' refusal, got %q", c.user, out)
		}
	}
}

// syncBuffer collects a child process's output written from exec's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitListening(t *testing.T, port int, log *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("mosquitto did not listen on %d within 5s; log:\n%s", port, log.String())
}

// TestCheckEmptyPassword: a zero-length password never matches, even for a
// user whose hash is of the empty string: mosquitto reads an empty password
// as none (its 09-pwfile-parse-invalid test, issue 21).
func TestCheckEmptyPassword(t *testing.T) {
	h, err := HashPassword(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePasswords("pw", strings.NewReader("empty:"+h+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pass := range [][]byte{nil, {}} {
		if p.Check([]byte("empty"), pass) {
			t.Fatalf("Check(empty, %q) = true, want false", pass)
		}
	}
}
