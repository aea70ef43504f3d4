package tools

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"golang.org/x/term"

	"github.com/midge-mqtt/midge/auth"
)

const passwdUsage = `midge passwd is a tool for managing password files for mosquitto.

Usage: midge passwd [-H sha512 | -H sha512-pbkdf2] [-c | -D] passwordfile username
       midge passwd [-H sha512 | -H sha512-pbkdf2] [-c] -b passwordfile username password
       midge passwd -U passwordfile
 -b : run in batch mode to allow passing passwords on the command line.
 -c : create a new password file. This will overwrite existing files.
 -D : delete the username rather than adding/updating its password.
 -H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.
      Mosquitto 1.6 and earlier defaulted to sha512.
 -U : update a plain text password file to use hashed passwords.

See https://mosquitto.org/ for more information.

`

// passwdMaxLen is mosquitto_passwd's limit on usernames and passwords.
const passwdMaxLen = 65535

// Passwd is `midge passwd`: mosquitto_passwd(1) with its flags, messages and
// exit codes. It writes the file atomically (a temporary file renamed over
// it) and keeps lines it does not change byte for byte.
//
// Where mosquitto_passwd 2.0.11 loses data, midge refuses instead: a corrupt
// line makes -b fail without touching the file (mosquitto_passwd prints the
// error, rewrites the file with only the new user and exits 0), and an empty
// username is refused.
func Passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	errorf := func(format string, a ...any) int {
		fmt.Fprintf(stderr, format+"\n", a...)
		return 1
	}
	if len(args) == 0 {
		fmt.Fprint(stdout, passwdUsage)
		return 1
	}
	hash, iterations := auth.SHA512PBKDF2, auth.DefaultIterations
	var batch, create, del, upgrade bool
	i := 0
flags:
	for ; i < len(args); i++ {
		switch args[i] {
		case "-H":
			if i+1 == len(args) {
				return errorf("Error: -H argument given but not enough other arguments.")
			}
			switch args[i+1] {
			case "sha512":
				hash = auth.SHA512
			case "sha512-pbkdf2":
				hash = auth.SHA512PBKDF2
			default:
				return errorf("Error: Unknown hash type '%s'", args[i+1])
			}
			i++
		case "-I": // undocumented in mosquitto_passwd, but accepted
			if i+1 == len(args) {
				return errorf("Error: -I argument given but not enough other arguments.")
			}
			n, err := strconv.Atoi(args[i+1])
			if err != nil || n < 1 {
				return errorf("Error: Number of iterations must be > 0.")
			}
			iterations = n
			i++
		case "-b":
			batch = true
		case "-c":
			create = true
		case "-D":
			del = true
		case "-U":
			upgrade = true
		default:
			break flags
		}
	}
	switch {
	case create && del:
		return errorf("Error: -c and -D cannot be used together.")
	case create && upgrade:
		return errorf("Error: -c and -U cannot be used together.")
	case del && upgrade:
		return errorf("Error: -D and -U cannot be used together.")
	case del && batch:
		return errorf("Error: -b and -D cannot be used together.")
	}
	rest := args[i:]
	var file, username, password string
	havePassword := false
	switch {
	case create && batch:
		if len(rest) < 3 {
			return errorf("Error: -c argument given but password file, username, or password missing.")
		}
		file, username, password, havePassword = rest[0], rest[1], rest[2], true
	case create:
		if len(rest) < 2 {
			return errorf("Error: -c argument given but password file or username missing.")
		}
		file, username = rest[0], rest[1]
	case del:
		if len(rest) < 2 {
			return errorf("Error: -D argument given but password file or username missing.")
		}
		file, username = rest[0], rest[1]
	case upgrade:
		if len(rest) != 1 {
			return errorf("Error: -U argument given but password file missing.")
		}
		file = rest[0]
	case batch && len(rest) == 3:
		file, username, password, havePassword = rest[0], rest[1], rest[2], true
	case !batch && len(rest) == 2:
		file, username = rest[0], rest[1]
	default:
		fmt.Fprint(stdout, passwdUsage)
		return 1
	}
	if !upgrade {
		if msg := passwdCheckUsername(username); msg != "" {
			return errorf("%s", msg)
		}
	}
	if len(password) > passwdMaxLen {
		return errorf("Error: Password must be less than 65536 characters long.")
	}
	newLine := func(user, pass string) (string, error) {
		h, err := auth.HashPasswordWith(hash, iterations, []byte(pass))
		if err != nil {
			return "", err
		}
		return user + ":" + h + "\n", nil
	}
	prompt := &passwdPrompt{in: stdin, out: stdout, err: stderr}

	if create {
		if !havePassword {
			var rc int
			if password, rc = prompt.read(); rc != 0 {
				return rc
			}
		}
		line, err := newLine(username, password)
		if err != nil {
			return errorf("Error: Unable to hash password.")
		}
		if err := passwdWrite(file, []byte(line)); err != nil {
			return errorf("Error: Unable to open file %s for writing. %s.", file, passwdErrno(err))
		}
		return 0
	}

	path := file
	if real, err := filepath.EvalSymlinks(file); err == nil {
		path, _ = filepath.Abs(real)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return errorf("Error: Unable to open password file %s. %s.", path, passwdErrno(err))
	}
	entries, bad := passwdEntries(old)
	if bad > 0 {
		return errorf("Error: Corrupt password file at line %d.", bad)
	}
	if !del && !upgrade && !havePassword {
		var rc int
		if password, rc = prompt.read(); rc != 0 {
			return rc
		}
	}
	var out bytes.Buffer
	found := false
	for _, e := range entries {
		switch {
		case upgrade:
			line, err := newLine(e.user, e.pass)
			if err != nil {
				return errorf("Error: Unable to hash password.")
			}
			out.WriteString(line)
		case e.user != username:
			out.WriteString(e.line)
		case del:
			found = true
		default:
			found = true
			line, err := newLine(username, password)
			if err != nil {
				return errorf("Error: Unable to hash password.")
			}
			out.WriteString(line)
		}
	}
	if del && !found {
		return errorf("Warning: User %s not found in password file.", username)
	}
	if !del && !upgrade && !found {
		if b := out.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
			out.WriteByte('\n')
		}
		line, err := newLine(username, password)
		if err != nil {
			return errorf("Error: Unable to hash password.")
		}
		out.WriteString(line)
	}
	if err := passwdWrite(path, out.Bytes()); err != nil {
		return errorf("Error occurred updating password file. %s.", passwdErrno(err))
	}
	return 0
}

func passwdCheckUsername(u string) string {
	if u == "" {
		return "Error: Username must not be empty."
	}
	if len(u) > passwdMaxLen {
		return "Error: Username must be less than 65536 characters long."
	}
	for _, r := range u {
		if r < 0x80 && unicode.IsControl(r) {
			return "Error: Username must not contain control characters."
		}
	}
	if strings.Contains(u, ":") {
		return "Error: Username must not contain the ':' character."
	}
	return ""
}

type passwdEntry struct {
	line       string // as read, with its newline if it had one
	user, pass string // blanks trimmed
}

// passwdEntries splits a password file into entries. Like mosquitto_passwd,
// a line needs a non-empty username and password separated by ':' (empty
// ':'-separated fields are skipped); bad is the first line that has not.
func passwdEntries(b []byte) (entries []passwdEntry, bad int) {
	for n := 1; len(b) > 0; n++ {
		end := bytes.IndexByte(b, '\n') + 1
		if end == 0 {
			end = len(b)
		}
		line := string(b[:end])
		b = b[end:]
		var fields []string
		for _, f := range strings.Split(strings.TrimRight(line, "\n"), ":") {
			if f != "" {
				fields = append(fields, f)
			}
		}
		if len(fields) < 2 {
			return nil, n
		}
		user, pass := strings.TrimSpace(fields[0]), strings.TrimSpace(fields[1])
		if user == "" || pass == "" {
			return nil, n
		}
		entries = append(entries, passwdEntry{line: line, user: user, pass: pass})
	}
	return entries, 0
}

// passwdWrite replaces path with data atomically: a temporary file in the
// same directory, synced, then renamed over it. An existing file keeps its
// permissions; a new one is readable by its owner only.
func passwdWrite(path string, data []byte) error {
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// passwdErrno is strerror(errno) as mosquitto_passwd prints it.
func passwdErrno(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// passwdPrompt asks for a password twice, without echo on a terminal, and
// reads lines otherwise, with mosquitto_passwd's prompts and exit codes.
type passwdPrompt struct {
	in       io.Reader
	out, err io.Writer
	lines    *bufio.Reader
}

func (p *passwdPrompt) read() (string, int) {
	first, rc := p.ask("Password: ")
	if rc != 0 {
		return "", rc
	}
	second, rc := p.ask("Reenter password: ")
	if rc != 0 {
		return "", rc
	}
	if first != second {
		fmt.Fprintln(p.err, "Error: Passwords do not match.")
		return "", 2
	}
	return first, 0
}

func (p *passwdPrompt) ask(prompt string) (string, int) {
	fmt.Fprint(p.out, prompt)
	var s string
	if f, ok := p.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b, err := term.ReadPassword(int(f.Fd()))
		if err != nil {
			b = nil
		}
		s = string(b)
	} else {
		if p.lines == nil {
			p.lines = bufio.NewReader(p.in)
		}
		line, _ := p.lines.ReadString('\n')
		s = strings.TrimRight(line, "\r\n")
	}
	if s == "" {
		fmt.Fprintln(p.err, "Error: Empty password.")
		return "", 1
	}
	if len(s) > passwdMaxLen {
		fmt.Fprintln(p.err, "Error: Password must be less than 65536 characters long.")
		return "", 1
	}
	fmt.Fprintln(p.out)
	return s, 0
}
