package auth

import (
	"sync/atomic"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// Files is the provider of password_file and acl_file (mosquitto 2.1:
// plugin mosquitto_password_file / mosquitto_acl_file). Reload swaps the
// files in without dropping anyone.
type Files struct {
	passwordFile string
	aclFile      string
	files        atomic.Pointer[files]
}

type files struct {
	pw  *Passwords // nil: no password_file
	acl *ACL       // nil: no acl_file
}

// NewFiles loads the files (empty paths: not configured).
func NewFiles(passwordFile, aclFile string) (*Files, error) {
	f := &Files{passwordFile: passwordFile, aclFile: aclFile}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload reads the password and ACL files again (SIGHUP). On error the old
// ones stay in force.
func (a *Files) Reload() error {
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

// Authenticate implements Provider as mosquitto 2's password file does: a
// client without a username is left to the others (and allow_anonymous); a
// username is checked against the file, and one not in it is refused.
func (a *Files) Authenticate(l *Login, _ *session.Client) (Result, byte) {
	f := a.files.Load()
	if f.pw == nil {
		return Skip, 0
	}
	if !l.HasUsername {
		return Defer, 0
	}
	password := l.Password
	if !l.HasPassword {
		password = nil
	}
	if f.pw.Check(l.Username, password) {
		return Allow, 0
	}
	return Deny, codec.BadUsernameOrPassword
}

// Check implements Provider with the ACL file (mosquitto 2.0: subscribing
// and unsubscribing are always allowed; read rules apply to each delivery).
func (a *Files) Check(c *session.ClientInfo, topic string, access session.Access, _ *session.Client) Result {
	f := a.files.Load()
	if f.acl == nil {
		return Skip
	}
	var acc Access
	switch access {
	case session.AccessRead:
		acc = Read
	case session.AccessWrite:
		acc = Write
	default:
		return Allow
	}
	if f.acl.Allowed(c.ClientID, c.Username, !c.HasUsername, topic, acc) {
		return Allow
	}
	return Deny
}
