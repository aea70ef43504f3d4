package tools

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/midge-mqtt/midge/auth"
)

const mosquittoPasswd = "/usr/bin/mosquitto_passwd"

func requirePasswdTool(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(mosquittoPasswd); err != nil {
		t.Fatalf("%s is missing: run `make deps` (installs Debian's mosquitto)", mosquittoPasswd)
	}
}

type passwdResult struct {
	rc             int
	stdout, stderr string
}

func runMidgePasswd(args []string, stdin string) passwdResult {
	var out, errb bytes.Buffer
	rc := Passwd(args, strings.NewReader(stdin), &out, &errb)
	return passwdResult{rc, out.String(), errb.String()}
}

func runMosquittoPasswd(t *testing.T, args []string, stdin string) passwdResult {
	t.Helper()
	cmd := exec.Command(mosquittoPasswd, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	rc := 0
	if ee, ok := err.(*exec.ExitError); ok {
		rc = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return passwdResult{rc, strings.ReplaceAll(out.String(), "mosquitto_passwd", "midge passwd"), errb.String()}
}

// hashShape hides the random salt and hash so files can be compared.
var hashShape = regexp.MustCompile(`\$([67])\$(\d+\$)?[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}`)

func shape(b []byte) string { return hashShape.ReplaceAllString(string(b), "$$$1$$${2}SALT$$HASH") }

// TestPasswdLikeMosquittoPasswd runs midge passwd and mosquitto_passwd on
// the same arguments, input and starting file, and compares exit codes,
// output and the resulting files (salts aside; every password is checked).
func TestPasswdLikeMosquittoPasswd(t *testing.T) {
	requirePasswdTool(t)
	hashed := "alice:$7$101$QBtWgdoINMb3DkzB$rmG84bW/nivumpDyfE+/h6ffzNn8mTSfIOcAcb7tKmJj0MIyhefPsTpl2ZwBNif6JoIKmEpZ1uROABaGH7nGKg==\n"
	cases := []struct {
		name    string
		start   *string // file content before; nil: no file
		args    []string
		stdin   string
		checks  map[string]string // user -> password that must verify afterwards
		noCheck bool              // file is not a hashed password file afterwards
	}{
		{name: "usage", args: nil},
		{name: "usage for too few", args: []string{"pw"}},
		{name: "unknown flag", args: []string{"-x", "pw", "u"}},
		{name: "c and D", args: []string{"-c", "-D", "pw", "u"}},
		{name: "c and U", args: []string{"-c", "-U", "pw"}},
		{name: "D and U", args: []string{"-D", "-U", "pw"}},
		{name: "b and D", args: []string{"-b", "-D", "pw", "u"}},
		{name: "c missing", args: []string{"-c", "pw"}},
		{name: "cb missing", args: []string{"-c", "-b", "pw", "u"}},
		{name: "D missing", args: []string{"-D", "pw"}},
		{name: "U missing", args: []string{"-U"}},
		{name: "U extra", args: []string{"-U", "pw", "x"}},
		{name: "H missing", args: []string{"-H"}},
		{name: "H unknown", args: []string{"-H", "md5", "pw", "u"}},
		{name: "I zero", args: []string{"-I", "0", "-b", "pw", "u", "p"}},
		{name: "colon in username", args: []string{"-c", "-b", "pw", "a:b", "p"}},
		{name: "control in username", args: []string{"-c", "-b", "pw", "a\tb", "p"}},
		{name: "missing file", args: []string{"-b", "pw", "u", "p"}},
		{name: "missing file delete", args: []string{"-D", "pw", "u"}},
		{name: "missing dir on create", args: []string{"-c", "-b", "nodir/pw", "u", "p"}},
		{name: "create batch", args: []string{"-c", "-b", "pw", "bob", "s3cret"}, checks: map[string]string{"bob": "s3cret"}},
		{name: "create batch sha512", args: []string{"-H", "sha512", "-c", "-b", "pw", "bob", "x y"}, checks: map[string]string{"bob": "x y"}},
		{name: "create iterations", args: []string{"-I", "7", "-c", "-b", "pw", "bob", "p"}, checks: map[string]string{"bob": "p"}},
		{name: "create overwrites", start: &hashed, args: []string{"-c", "-b", "pw", "bob", "p"}, checks: map[string]string{"bob": "p"}},
		{name: "create prompted", args: []string{"-c", "pw", "bob"}, stdin: "pw1\npw1\n", checks: map[string]string{"bob": "pw1"}},
		{name: "prompt mismatch", args: []string{"-c", "pw", "bob"}, stdin: "pw1\npw2\n"},
		{name: "prompt empty", args: []string{"-c", "pw", "bob"}, stdin: "\n"},
		{name: "prompt eof", args: []string{"-c", "pw", "bob"}, stdin: ""},
		{name: "prompt second empty", args: []string{"-c", "pw", "bob"}, stdin: "x\n"},
		{name: "add user", start: &hashed, args: []string{"-b", "pw", "bob", "b"}, checks: map[string]string{"alice": "secret", "bob": "b"}},
		{name: "update user", start: &hashed, args: []string{"-b", "pw", "alice", "new"}, checks: map[string]string{"alice": "new"}},
		{name: "update prompted", start: &hashed, args: []string{"pw", "alice"}, stdin: "n2\nn2\n", checks: map[string]string{"alice": "n2"}},
		{name: "delete user", start: ptr(hashed + "bob:$6$ABbFCLvD8+thbDGs$CEpO83230Ce3peVgYkn5tngAqxKMh/X4KlTcaMM32cwhjpwxZsVYZ8rctjMfP41r7cxbj4EiLE3THuIAanixhw==\n"),
			args: []string{"-D", "pw", "alice"}, checks: map[string]string{"bob": "c"}},
		{name: "delete missing user", start: &hashed, args: []string{"-D", "pw", "nobody"}, checks: map[string]string{"alice": "secret"}},
		{name: "delete duplicates", start: ptr("u1:p1\nu1:p2\nu2:p3\n"), args: []string{"-D", "pw", "u1"}, noCheck: true},
		{name: "upgrade", start: ptr("u1:p1\n u2 : p 2 \n"), args: []string{"-U", "pw"}, checks: map[string]string{"u1": "p1", "u2": "p 2"}},
		{name: "upgrade sha512", start: ptr("u1:p1\n"), args: []string{"-H", "sha512", "-U", "pw"}, checks: map[string]string{"u1": "p1"}},
		{name: "upgrade corrupt", start: ptr("u1:p1\n\nu2:p2\n"), args: []string{"-U", "pw"}, noCheck: true},
		{name: "corrupt delete", start: ptr("u1:p1\nu2\n"), args: []string{"-D", "pw", "u1"}, noCheck: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			results := map[string]passwdResult{}
			files := map[string][]byte{}
			for _, who := range []string{"mosquitto", "midge"} {
				dir := t.TempDir()
				file := filepath.Join(dir, "pw")
				if c.start != nil {
					if err := os.WriteFile(file, []byte(*c.start), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				args := make([]string, len(c.args))
				for i, a := range c.args {
					if a == "pw" || a == "nodir/pw" {
						a = filepath.Join(dir, a)
					}
					args[i] = a
				}
				var r passwdResult
				if who == "mosquitto" {
					r = runMosquittoPasswd(t, args, c.stdin)
				} else {
					r = runMidgePasswd(args, c.stdin)
				}
				r.stdout = strings.ReplaceAll(r.stdout, dir, "DIR")
				r.stderr = strings.ReplaceAll(r.stderr, dir, "DIR")
				results[who] = r
				files[who], _ = os.ReadFile(file)
			}
			if results["midge"] != results["mosquitto"] {
				t.Fatalf("midge passwd %q:\n got %+v\nwant %+v", c.args, results["midge"], results["mosquitto"])
			}
			if got, want := shape(files["midge"]), shape(files["mosquitto"]); got != want {
				t.Fatalf("file after midge passwd:\n%s\nafter mosquitto_passwd:\n%s", got, want)
			}
			if c.noCheck || len(files["midge"]) == 0 {
				return
			}
			for who, b := range files {
				p, err := auth.ParsePasswords(who, bytes.NewReader(b))
				if err != nil {
					t.Fatalf("%s's file: %v", who, err)
				}
				for u, pw := range c.checks {
					if !p.Check([]byte(u), []byte(pw)) || p.Check([]byte(u), []byte(pw+"x")) {
						t.Errorf("%s's file: password of %s does not verify", who, u)
					}
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestPasswdDivergences pins where midge refuses what mosquitto_passwd
// 2.0.11 does destructively.
func TestPasswdDivergences(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	start := "# comment\nu1:p1\n"
	if err := os.WriteFile(file, []byte(start), 0o640); err != nil {
		t.Fatal(err)
	}
	// mosquitto_passwd prints this error, then keeps only the new user, exit 0.
	r := runMidgePasswd([]string{"-b", file, "x", "y"}, "")
	if r.rc != 1 || r.stderr != "Error: Corrupt password file at line 1.\n" {
		t.Fatalf("corrupt file: %+v", r)
	}
	if b, _ := os.ReadFile(file); string(b) != start {
		t.Fatalf("file changed to %q", b)
	}
	r = runMidgePasswd([]string{"-c", "-b", file, "", "y"}, "")
	if r.rc != 1 || r.stderr != "Error: Username must not be empty.\n" {
		t.Fatalf("empty username: %+v", r)
	}
}

func TestPasswdAtomicKeepsModeAndLines(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	h, err := auth.HashPassword([]byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	start := "a:" + h + "\nb:" + h // last line without newline
	if err := os.WriteFile(file, []byte(start), 0o640); err != nil {
		t.Fatal(err)
	}
	if r := runMidgePasswd([]string{"-b", file, "c", "cc"}, ""); r.rc != 0 {
		t.Fatalf("%+v", r)
	}
	b, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(b), start+"\nc:$7$101$") {
		t.Fatalf("other lines not kept byte for byte:\n%s", b)
	}
	fi, _ := os.Stat(file)
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	// A new file is for its owner only.
	newFile := filepath.Join(dir, "new")
	if r := runMidgePasswd([]string{"-c", "-b", newFile, "u", "p"}, ""); r.rc != 0 {
		t.Fatalf("%+v", r)
	}
	if fi, _ := os.Stat(newFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestMosquittoPasswdReadsMidgeFile: mosquitto_passwd edits a file midge
// wrote without calling it corrupt, and midge edits one it wrote.
func TestMosquittoPasswdReadsMidgeFile(t *testing.T) {
	requirePasswdTool(t)
	file := filepath.Join(t.TempDir(), "pw")
	if r := runMidgePasswd([]string{"-c", "-b", file, "a", "pa"}, ""); r.rc != 0 {
		t.Fatalf("%+v", r)
	}
	if r := runMosquittoPasswd(t, []string{"-b", file, "b", "pb"}, ""); r.rc != 0 || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	if r := runMidgePasswd([]string{"-D", file, "b"}, ""); r.rc != 0 {
		t.Fatalf("%+v", r)
	}
	p, err := auth.LoadPasswords(file)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 1 || !p.Check([]byte("a"), []byte("pa")) {
		t.Fatalf("file after edits: %d users", p.Len())
	}
}
