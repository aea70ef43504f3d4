package auth

import (
	"strings"
	"sync/atomic"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// Authorizer is a listener's security (allow_anonymous, password_file,
// acl_file) in the form the broker asks for: it implements
// session.Authorizer. Reload swaps the files in without dropping anyone.
type Authorizer struct {
	allowAnonymous bool
	passwordFile   string
	aclFile        string
	files          atomic.Pointer[files]
}

type files struct {
	pw  *Passwords // nil: no password_file
	acl *ACL       // nil: no acl_file (everything allowed)
}

// NewAuthorizer loads the files (empty paths: not configured).
func NewAuthorizer(allowAnonymous bool, passwordFile, aclFile string) (*Authorizer, error) {
	a := &Authorizer{allowAnonymous: allowAnonymous, passwordFile: passwordFile, aclFile: aclFile}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload reads the password and ACL files again (SIGHUP). On error the old
// ones stay in force.
func (a *Authorizer) Reload() error {
	var f files
	var err error
	if a.passwordFile != "" {
		if f.pw, err = LoadPasswords(a.passwordFile); err != nil {
			return err
		}
	}
	if a.aclFile != "" {
		if f.acl, err = LoadACL(a.aclFile); err != nil {
			return err
		}
	}
	a.files.Store(&f)
	return nil
}

// Authenticate implements session.Authorizer, as mosquitto 2 decides: a
// client with a username is checked against the password file when there is
// one; a client without one, or with no password file to check against, is
// anonymous and allowed only with allow_anonymous true.
func (a *Authorizer) Authenticate(clientID string, username, password []byte, hasUsername, hasPassword bool) byte {
	f := a.files.Load()
	if hasUsername && f.pw != nil {
		if !hasPassword {
			password = nil
		}
		if f.pw.Check(username, password) {
			return codec.Success
		}
		return codec.BadUsernameOrPassword
	}
	if a.allowAnonymous {
		return codec.Success
	}
	return codec.NotAuthorized
}

// Allow implements session.Authorizer with the ACL file, plus mosquitto's
// built-in rule that clients never publish to $SYS topics.
func (a *Authorizer) Allow(c *session.ClientInfo, topic string, access session.Access) bool {
	var acc Access
	switch access {
	case session.AccessRead:
		acc = Read
	case session.AccessWrite:
		acc = Write
		if strings.HasPrefix(topic, "$SYS/") || topic == "$SYS" {
			return false
		}
	case session.AccessSubscribe:
		acc = Subscribe
	}
	return a.files.Load().acl.Allowed(c.ClientID, c.Username, !c.HasUsername, topic, acc)
}
