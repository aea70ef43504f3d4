// Package auth reads mosquitto's password and ACL files and answers the
// broker's two questions: may this username/password connect, and may this
// client read or write this topic.
//
// The formats and the semantics are mosquitto 2.0's, so that files made for
// mosquitto (and by mosquitto_passwd) work unchanged.
package auth

import (
	"bufio"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/pbkdf2"
)

// Hash is a password hash format of mosquitto_passwd.
type Hash int

const (
	// SHA512PBKDF2 is `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512, the
	// default of mosquitto 2.0.
	SHA512PBKDF2 Hash = 7
	// SHA512 is `$6$SALT$HASH`: SHA-512 over password then salt, the format
	// of mosquitto 1.6 and earlier.
	SHA512 Hash = 6
)

// DefaultIterations is the PBKDF2 iteration count mosquitto_passwd 2.0
// writes (`$7$101$...`).
const DefaultIterations = 101

const (
	saltLen = 12 // mosquitto_passwd's salt, in bytes
	hashLen = 64 // SHA-512 output; mosquitto refuses other lengths
)

// Passwords is a loaded password file. It is read-only after loading and
// safe for concurrent use.
type Passwords struct {
	users map[string]credential
}

type credential struct {
	hash       Hash
	iterations int
	salt       []byte
	sum        []byte
}

// dummy is checked against when the username is unknown, so that the time
// taken does not tell whether a user exists.
var dummy = credential{hash: SHA512PBKDF2, iterations: DefaultIterations,
	salt: make([]byte, saltLen), sum: make([]byte, hashLen)}

// LoadPasswords reads a mosquitto password file (`username:$7$...` or
// `username:$6$...` lines). Errors name the file and line.
func LoadPasswords(path string) (*Passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	return ParsePasswords(path, f)
}

// ParsePasswords reads a password file from r; name is used in errors.
// As in mosquitto, lines starting with '#' and lines without ':' (blank
// lines) are skipped, and blanks around the username and hash are ignored.
// Unlike mosquitto, which drops a bad entry with a log line, an entry that
// cannot be used is an error: a user silently locked out is worse.
func ParsePasswords(name string, r io.Reader) (*Passwords, error) {
	p := &Passwords{users: make(map[string]credential)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok {
			continue
		}
		user = strings.TrimSpace(user)
		hash = strings.TrimSpace(hash)
		if user == "" {
			return nil, fmt.Errorf("auth: %s:%d: empty username", name, line)
		}
		c, err := parseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("auth: %s:%d: user %q: %v", name, line, user, err)
		}
		p.users[user] = c
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: %s:%d: %w", name, line+1, err)
	}
	return p, nil
}

func parseHash(s string) (credential, error) {
	if s == "" {
		return credential{}, fmt.Errorf("missing password hash")
	}
	f := strings.Split(s, "$")
	// A hash starts with '$', so f[0] is empty.
	if len(f) < 2 || f[0] != "" {
		return credential{}, fmt.Errorf("unknown password hash format (expected $7$ or $6$; a plain text file needs `midge passwd -U`)")
	}
	var c credential
	switch f[1] {
	case "7":
		if len(f) != 5 {
			return c, fmt.Errorf("malformed $7$ hash: expected $7$ITERATIONS$SALT$HASH")
		}
		n, err := strconv.Atoi(f[2])
		if err != nil || n < 1 {
			return c, fmt.Errorf("invalid hash iterations %q", f[2])
		}
		c.hash, c.iterations, f = SHA512PBKDF2, n, f[3:]
	case "6":
		if len(f) != 4 {
			return c, fmt.Errorf("malformed $6$ hash: expected $6$SALT$HASH")
		}
		c.hash, f = SHA512, f[2:]
	default:
		return c, fmt.Errorf("unknown password hash type $%s$ (expected $7$ or $6$)", f[1])
	}
	salt, err := base64.StdEncoding.DecodeString(f[0])
	if err != nil || len(salt) != saltLen {
		return c, fmt.Errorf("invalid salt: expected %d bytes of base64", saltLen)
	}
	sum, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(sum) != hashLen {
		return c, fmt.Errorf("invalid hash: expected %d bytes of base64", hashLen)
	}
	c.salt, c.sum = salt, sum
	return c, nil
}

// Len is the number of users in the file.
func (p *Passwords) Len() int { return len(p.users) }

// Check reports whether password is right for username. A nil or empty
// password (CONNECT without the password flag, or with a zero-length one)
// never matches a listed user, as in mosquitto. The comparison is constant-time, and an unknown user costs the
// same hashing as a known one.
func (p *Passwords) Check(username, password []byte) bool {
	c, ok := p.users[string(username)]
	if !ok {
		c = dummy
	}
	sum := digest(c.hash, c.iterations, password, c.salt)
	equal := subtle.ConstantTimeCompare(sum, c.sum) == 1
	return ok && len(password) > 0 && equal
}

func digest(h Hash, iterations int, password, salt []byte) []byte {
	if h == SHA512 {
		d := sha512.New()
		d.Write(password)
		d.Write(salt)
		return d.Sum(nil)
	}
	return pbkdf2.Key(password, salt, iterations, hashLen, sha512.New)
}

// HashPassword hashes password as mosquitto_passwd 2.0 does by default:
// `$7$101$SALT$HASH` with a fresh random salt.
func HashPassword(password []byte) (string, error) {
	return HashPasswordWith(SHA512PBKDF2, DefaultIterations, password)
}

// HashPasswordWith hashes password in format h with a fresh random salt;
// iterations only applies to SHA512PBKDF2 and must be at least 1.
func HashPasswordWith(h Hash, iterations int, password []byte) (string, error) {
	if h != SHA512 && h != SHA512PBKDF2 {
		return "", fmt.Errorf("auth: unknown hash format %d", int(h))
	}
	if h == SHA512PBKDF2 && iterations < 1 {
		return "", fmt.Errorf("auth: iterations must be > 0, got %d", iterations)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	sum := base64.StdEncoding.EncodeToString(digest(h, iterations, password, salt))
	s64 := base64.StdEncoding.EncodeToString(salt)
	if h == SHA512 {
		return "$6$" + s64 + "$" + sum, nil
	}
	return "$7$" + strconv.Itoa(iterations) + "$" + s64 + "$" + sum, nil
}

// Has reports whether username has a password in the file.
func (p *Passwords) Has(username string) bool {
	_, ok := p.users[username]
	return ok
}
