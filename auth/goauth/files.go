package goauth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/pbkdf2"

	"github.com/midge-mqtt/midge/auth"
)

// filesBackend is go-auth's files backend: a password file of
// `username:HASH` lines (go-auth's PBKDF2$sha512$ITER$SALT$KEY, its
// pbkdf2-sha512$i=N,l=L$SALT$KEY form, or bcrypt $2a$/$2b$/$2y$) and an ACL
// file in mosquitto's syntax with go-auth's rules: `topic` lines before any
// `user` line and `pattern` lines apply to everyone, a `deny` anywhere wins,
// `read` also grants subscribing (except to "#"), and `subscribe` grants
// only that.
type filesBackend struct {
	users        map[string]*fileUser
	general      []aclRule // general topics and patterns (patterns carry %c/%u)
	checkACLs    bool
	staticOnly   bool // the only backend: no ACL file means everything is allowed
	saltEncoding string
}

type fileUser struct {
	hash string
	acls []aclRule
}

type aclRule struct {
	topic   string
	acc     int // accRead, accWrite, accReadWrite, accSubscribe, accDeny
	pattern bool
}

const (
	accRead      = 1
	accWrite     = 2
	accReadWrite = 3
	accSubscribe = 4
	accDeny      = 0x11
)

func newFiles(opt func(string) (string, bool), only bool) (*filesBackend, error) {
	f := &filesBackend{users: map[string]*fileUser{}, staticOnly: only, saltEncoding: "base64"}
	if v, ok := opt("hasher_salt_encoding"); ok && v == "utf-8" {
		f.saltEncoding = "utf-8"
	}
	pw, ok := opt("password_path")
	if !ok || pw == "" {
		return nil, &OptError{Name: "backends", Msg: "the files backend needs auth_opt_password_path"}
	}
	if err := f.readPasswords(pw); err != nil {
		return nil, &OptError{Name: "password_path", Msg: err.Error()}
	}
	if acl, ok := opt("acl_path"); ok && acl != "" {
		if err := f.readACL(acl); err != nil {
			return nil, &OptError{Name: "acl_path", Msg: err.Error()}
		}
		f.checkACLs = true
	}
	return f, nil
}

func (f *filesBackend) name() string { return "files" }

func (f *filesBackend) readPasswords(path string) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, h, ok := strings.Cut(line, ":")
		if !ok || user == "" || h == "" {
			return fmt.Errorf("%s:%d: expected username:hash", path, n)
		}
		f.users[user] = &fileUser{hash: h}
	}
	return sc.Err()
}

func (f *filesBackend) readACL(path string) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	var cur *fileUser
	userSeen := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch word {
		case "user":
			if rest == "" {
				return fmt.Errorf("%s:%d: missing username", path, n)
			}
			userSeen = true
			cur = f.users[rest]
			if cur == nil {
				cur = &fileUser{}
				f.users[rest] = cur
			}
		case "topic", "pattern":
			r := aclRule{topic: rest, acc: accReadWrite, pattern: word == "pattern"}
			if perm, topic, ok := strings.Cut(rest, " "); ok {
				acc, known := map[string]int{"read": accRead, "write": accWrite, "readwrite": accReadWrite,
					"subscribe": accSubscribe, "deny": accDeny}[perm]
				if !known {
					return fmt.Errorf("%s:%d: unknown access %q", path, n, perm)
				}
				r.acc, r.topic = acc, strings.TrimSpace(topic)
			}
			switch {
			case r.pattern:
				f.general = append(f.general, r)
			case cur != nil:
				cur.acls = append(cur.acls, r)
			case !userSeen:
				f.general = append(f.general, r)
			}
		default:
			return fmt.Errorf("%s:%d: expected user, topic or pattern, got %q", path, n, word)
		}
	}
	return sc.Err()
}

func (f *filesBackend) getUser(_ context.Context, username, password, _ string) (bool, error) {
	u := f.users[username]
	if u == nil || u.hash == "" {
		return false, nil
	}
	return checkHash(password, u.hash, f.saltEncoding), nil
}

func (f *filesBackend) superuser(context.Context, string) (bool, error) { return false, nil }

func (f *filesBackend) checkACL(_ context.Context, username, topic, clientID string, acc int) (bool, error) {
	if !f.checkACLs {
		return f.staticOnly, nil
	}
	u := f.users[username]
	subst := func(r aclRule) string {
		if !r.pattern {
			return r.topic
		}
		return strings.ReplaceAll(strings.ReplaceAll(r.topic, "%c", clientID), "%u", username)
	}
	var own []aclRule
	if u != nil {
		own = u.acls
	}
	for _, rules := range [][]aclRule{own, f.general} {
		for _, r := range rules {
			if r.acc == accDeny && auth.MatchTopic(subst(r), topic) {
				return false, nil
			}
		}
	}
	for _, rules := range [][]aclRule{own, f.general} {
		for _, r := range rules {
			if r.acc != accDeny && auth.MatchTopic(subst(r), topic) && grants(r.acc, acc, topic) {
				return true, nil
			}
		}
	}
	return false, nil
}

func grants(rule, acc int, topic string) bool {
	return rule == acc || rule == accReadWrite ||
		(acc == accSubscribe && topic != "#" && (rule == accRead || rule == accSubscribe))
}

// checkHash compares password with a go-auth hash, in constant time.
func checkHash(password, h, saltEncoding string) bool {
	switch {
	case strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$"):
		return bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) == nil
	case strings.HasPrefix(h, "PBKDF2$"):
		// PBKDF2$ALG$ITERATIONS$SALT$KEY
		p := strings.Split(h, "$")
		if len(p) != 5 {
			return false
		}
		iter, err := strconv.Atoi(p[2])
		if err != nil || iter < 1 {
			return false
		}
		salt := []byte(p[3])
		if saltEncoding != "utf-8" {
			if salt, err = base64.StdEncoding.DecodeString(p[3]); err != nil {
				return false
			}
		}
		key, err := base64.StdEncoding.DecodeString(p[4])
		if err != nil || len(key) == 0 {
			return false
		}
		return samePBKDF2(password, salt, iter, key, p[1])
	case strings.HasPrefix(h, "pbkdf2-sha512$"):
		// pbkdf2-sha512$i=ITER,l=LEN$SALT$KEY (unpadded base64)
		p := strings.Split(h, "$")
		if len(p) != 4 {
			return false
		}
		iter := 0
		for _, kv := range strings.Split(p[1], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == "i" {
				iter, _ = strconv.Atoi(v)
			}
		}
		raw := base64.StdEncoding.WithPadding(base64.NoPadding)
		salt := []byte(p[2])
		var err error
		if saltEncoding != "utf-8" {
			if salt, err = raw.DecodeString(p[2]); err != nil {
				return false
			}
		}
		key, err := raw.DecodeString(p[3])
		if err != nil || iter < 1 || len(key) == 0 {
			return false
		}
		return samePBKDF2(password, salt, iter, key, "sha512")
	}
	return false
}

func samePBKDF2(password string, salt []byte, iter int, key []byte, alg string) bool {
	var h func() hash.Hash
	switch alg {
	case "sha512":
		h = sha512.New
	case "sha256":
		h = sha256.New
	default:
		return false
	}
	return subtle.ConstantTimeCompare(pbkdf2.Key([]byte(password), salt, iter, len(key), h), key) == 1
}

// HashPBKDF2 makes a go-auth PBKDF2$sha512$ hash (for tests and tools).
func HashPBKDF2(password string, salt []byte, iterations int) string {
	key := pbkdf2.Key([]byte(password), salt, iterations, 64, sha512.New)
	return "PBKDF2$sha512$" + strconv.Itoa(iterations) + "$" + base64.StdEncoding.EncodeToString(salt) + "$" +
		base64.StdEncoding.EncodeToString(key)
}
