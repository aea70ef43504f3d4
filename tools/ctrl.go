package tools

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/pbkdf2"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

const ctrlUsage = `midge ctrl: administer a broker's dynamic security (mosquitto_ctrl's flags and commands)

Usage: midge ctrl [-h host] [-p port] [-u username] [-P password] [-i id] [-V 5|311]
                  dynsec COMMAND [ARGS...]
       midge ctrl dynsec init FILE ADMIN-USERNAME [ADMIN-PASSWORD]

General:  getDefaultACLAccess | setDefaultACLAccess ACLTYPE allow|deny
          getAnonymousGroup | setAnonymousGroup GROUP
Clients:  createClient USER [-c CLIENTID] [-p PASSWORD] | deleteClient USER
          setClientPassword USER [PASSWORD] | setClientId USER [CLIENTID]
          addClientRole USER ROLE [PRIORITY] | removeClientRole USER ROLE
          getClient USER | listClients [COUNT [OFFSET]] | enableClient USER | disableClient USER
Groups:   createGroup GROUP | deleteGroup GROUP | getGroup GROUP | listGroups [COUNT [OFFSET]]
          addGroupRole GROUP ROLE [PRIORITY] | removeGroupRole GROUP ROLE
          addGroupClient GROUP USER [PRIORITY] | removeGroupClient GROUP USER
Roles:    createRole ROLE | deleteRole ROLE | getRole ROLE | listRoles [COUNT [OFFSET]]
          addRoleACL ROLE ACLTYPE TOPIC allow|deny [PRIORITY] | removeRoleACL ROLE ACLTYPE TOPIC
ACLTYPE:  publishClientSend, publishClientReceive, subscribeLiteral, subscribePattern,
          unsubscribeLiteral, unsubscribePattern
`

const ctrlTopic = "$CONTROL/dynamic-security/v1"

// Ctrl is `midge ctrl`: mosquitto_ctrl's dynsec module. It sends one
// command to $CONTROL/dynamic-security/v1, waits for the response and
// prints it as mosquitto_ctrl does.
func Ctrl(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o := client.Options{Addr: "localhost:1883", Version: codec.Version5, CleanStart: true, KeepAlive: 60}
	host, port := "localhost", "1883"
	i := 0
	flag := func() (string, bool) {
		if i+1 >= len(args) {
			fmt.Fprintf(stderr, "Error: %s needs a value.\n", args[i])
			return "", false
		}
		i++
		return args[i], true
	}
	for ; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		var ok bool
		switch args[i] {
		case "-h":
			host, ok = flag()
		case "-p":
			port, ok = flag()
		case "-u":
			o.Username, ok = flag()
			o.HasUsername = true
		case "-P":
			var pw string
			pw, ok = flag()
			o.Password, o.HasPassword = []byte(pw), true
		case "-i":
			o.ClientID, ok = flag()
		case "-V":
			var v string
			if v, ok = flag(); ok {
				switch v {
				case "5", "mqttv5":
					o.Version = codec.Version5
				case "311", "mqttv311":
					o.Version = codec.Version311
				default:
					fmt.Fprintf(stderr, "Error: unknown protocol version %q.\n", v)
					return 1
				}
			}
		case "--help":
			fmt.Fprint(stdout, ctrlUsage)
			return 1
		default:
			fmt.Fprintf(stderr, "Error: unknown option %q (midge ctrl takes -h, -p, -u, -P, -i and -V).\n", args[i])
			return 1
		}
		if !ok {
			return 1
		}
	}
	args = args[i:]
	if len(args) < 2 || args[0] != "dynsec" {
		fmt.Fprint(stderr, ctrlUsage)
		return 1
	}
	if args[1] == "init" {
		return dynsecInit(args[2:], stdin, stdout, stderr)
	}
	cmd, err := dynsecCommand(args[1], args[2:], stdin, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	o.Addr = net.JoinHostPort(host, port)
	if o.ClientID == "" {
		o.ClientID = fmt.Sprintf("midge-ctrl-%d", os.Getpid())
	}
	resp, err := ask(o, cmd)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return printResponse(resp, stdout, stderr)
}

// dynsecCommand makes the JSON command of one mosquitto_ctrl dynsec verb.
func dynsecCommand(verb string, a []string, stdin io.Reader, stdout io.Writer) (map[string]any, error) {
	c := map[string]any{"command": verb}
	bad := fmt.Errorf("wrong arguments for %s (see midge ctrl --help)", verb)
	need := func(min, max int) bool { return len(a) >= min && len(a) <= max }
	prio := func(i int) error {
		if len(a) > i {
			n, err := strconv.Atoi(a[i])
			if err != nil {
				return fmt.Errorf("priority %q is not a number", a[i])
			}
			c["priority"] = n
		}
		return nil
	}
	page := func() error {
		c["verbose"] = false
		for i, k := range []string{"count", "offset"} {
			if len(a) > i {
				n, err := strconv.Atoi(a[i])
				if err != nil {
					return bad
				}
				c[k] = n
			}
		}
		return nil
	}
	acl := func(i int) error {
		t := a[i]
		if _, ok := map[string]bool{"publishclientsend": true, "publishclientreceive": true, "subscribeliteral": true,
			"subscribepattern": true, "unsubscribeliteral": true, "unsubscribepattern": true}[strings.ToLower(t)]; !ok {
			return fmt.Errorf("unknown acltype %q", t)
		}
		c["acltype"], c["topic"] = t, a[i+1]
		return nil
	}
	var err error
	switch verb {
	case "getDefaultACLAccess", "getAnonymousGroup":
		if !need(0, 0) {
			return nil, bad
		}
	case "setDefaultACLAccess":
		if !need(2, 2) || (a[1] != "allow" && a[1] != "deny") {
			return nil, bad
		}
		c["acls"] = []map[string]any{{"acltype": a[0], "allow": a[1] == "allow"}}
	case "setAnonymousGroup", "createGroup", "deleteGroup", "getGroup":
		if !need(1, 1) {
			return nil, bad
		}
		c["groupname"] = a[0]
	case "createClient":
		if len(a) < 1 {
			return nil, bad
		}
		c["username"] = a[0]
		pwSet := false
		for i := 1; i < len(a); i++ {
			if i+1 >= len(a) || (a[i] != "-c" && a[i] != "-p") {
				return nil, bad
			}
			if a[i] == "-c" {
				c["clientid"] = a[i+1]
			} else {
				c["password"], pwSet = a[i+1], true
			}
			i++
		}
		if !pwSet {
			if pw := promptPassword(a[0], stdin, stdout); pw != "" {
				c["password"] = pw
			}
		}
	case "deleteClient", "getClient", "enableClient", "disableClient":
		if !need(1, 1) {
			return nil, bad
		}
		c["username"] = a[0]
	case "setClientPassword":
		if !need(1, 2) {
			return nil, bad
		}
		c["username"] = a[0]
		if len(a) == 2 {
			c["password"] = a[1]
		} else {
			c["password"] = promptPassword(a[0], stdin, stdout)
		}
	case "setClientId":
		if !need(1, 2) {
			return nil, bad
		}
		c["username"] = a[0]
		if len(a) == 2 {
			c["clientid"] = a[1]
		}
	case "addClientRole", "removeClientRole":
		if !need(2, 3) || (verb == "removeClientRole" && len(a) == 3) {
			return nil, bad
		}
		c["username"], c["rolename"] = a[0], a[1]
		err = prio(2)
	case "addGroupRole", "removeGroupRole":
		if !need(2, 3) || (verb == "removeGroupRole" && len(a) == 3) {
			return nil, bad
		}
		c["groupname"], c["rolename"] = a[0], a[1]
		err = prio(2)
	case "addGroupClient", "removeGroupClient":
		if !need(2, 3) || (verb == "removeGroupClient" && len(a) == 3) {
			return nil, bad
		}
		c["groupname"], c["username"] = a[0], a[1]
		err = prio(2)
	case "listClients", "listGroups", "listRoles":
		if !need(0, 2) {
			return nil, bad
		}
		err = page()
	case "createRole", "deleteRole", "getRole":
		if !need(1, 1) {
			return nil, bad
		}
		c["rolename"] = a[0]
	case "addRoleACL":
		if !need(4, 5) || (a[3] != "allow" && a[3] != "deny") {
			return nil, bad
		}
		c["rolename"] = a[0]
		if err = acl(1); err == nil {
			c["allow"] = a[3] == "allow"
			err = prio(4)
		}
	case "removeRoleACL":
		if !need(3, 3) {
			return nil, bad
		}
		c["rolename"] = a[0]
		err = acl(1)
	default:
		return nil, fmt.Errorf("unknown dynsec command %q (see midge ctrl --help)", verb)
	}
	return c, err
}

func promptPassword(user string, stdin io.Reader, stdout io.Writer) string {
	fmt.Fprintf(stdout, "Password for %s (empty: none): ", user)
	line, _ := bufio.NewReader(stdin).ReadString('\n')
	return strings.TrimRight(line, "\r\n")
}

// ask connects, subscribes to the response topic, sends cmd and returns
// the first response.
func ask(o client.Options, cmd map[string]any) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.New(o)
	got := make(chan []byte, 1)
	c.OnMessage = func(m *client.Message) {
		select {
		case got <- append([]byte(nil), m.Payload...):
		default:
		}
	}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	defer c.Close()
	codes, err := c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte(ctrlTopic + "/response"), QoS: 1})
	if err != nil {
		return nil, err
	}
	if codes[0] >= 0x80 {
		return nil, fmt.Errorf("not allowed to subscribe to %s/response", ctrlTopic)
	}
	payload, _ := json.Marshal(map[string]any{"commands": []any{cmd}})
	if err := c.Publish(ctx, &client.Message{Topic: []byte(ctrlTopic), Payload: payload, QoS: 1}); err != nil {
		return nil, err
	}
	select {
	case b := <-got:
		var r struct{ Responses []map[string]any }
		if err := json.Unmarshal(b, &r); err != nil || len(r.Responses) == 0 {
			return nil, fmt.Errorf("invalid response from the broker: %q", b)
		}
		return r.Responses[0], nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no response from the broker (is dynamic security configured, and may this client use it?)")
	}
}

// printResponse prints a response as mosquitto_ctrl does.
func printResponse(r map[string]any, stdout, stderr io.Writer) int {
	cmd, _ := r["command"].(string)
	if e, ok := r["error"].(string); ok {
		fmt.Fprintf(stderr, "%s: Error: %s\n", cmd, e)
		return 1
	}
	data, _ := r["data"].(map[string]any)
	str := func(m map[string]any, k string) (string, bool) { s, ok := m[k].(string); return s, ok }
	list := func(arr, key string) {
		items, _ := data[arr].([]any)
		for _, it := range items {
			switch v := it.(type) {
			case string:
				fmt.Fprintln(stdout, v)
			case map[string]any:
				if s, ok := str(v, key); ok {
					fmt.Fprintln(stdout, s)
				}
			}
		}
	}
	priority := func(m map[string]any) string {
		if p, ok := m["priority"].(float64); ok {
			return fmt.Sprintf(" (priority: %d)", int(p))
		}
		return " (priority: -1)"
	}
	// named prints "Label: name (priority: N)" lines, the label padded.
	named := func(v any, label string, width int, key string, withPrio bool) {
		items, ok := v.([]any)
		if !ok {
			fmt.Fprintf(stdout, "%s\n", label)
			return
		}
		first := true
		for _, it := range items {
			m, _ := it.(map[string]any)
			name, ok := str(m, key)
			if !ok {
				continue
			}
			l := ""
			if first {
				l, first = label, false
			}
			fmt.Fprintf(stdout, "%-*s %s", width, l, name)
			if withPrio {
				fmt.Fprint(stdout, priority(m))
			}
			fmt.Fprintln(stdout)
		}
	}
	switch strings.ToLower(cmd) {
	case "listclients":
		list("clients", "username")
	case "listgroups":
		list("groups", "groupname")
	case "listroles":
		list("roles", "rolename")
	case "getclient":
		c, _ := data["client"].(map[string]any)
		u, _ := str(c, "username")
		fmt.Fprintf(stdout, "Username: %s\n", u)
		if id, ok := str(c, "clientid"); ok {
			fmt.Fprintf(stdout, "Clientid: %s\n", id)
		} else {
			fmt.Fprintln(stdout, "Clientid:")
		}
		if d, ok := c["disabled"].(bool); ok {
			fmt.Fprintf(stdout, "Disabled: %v\n", d)
		}
		named(c["roles"], "Roles:", len("Username:"), "rolename", true)
		named(c["groups"], "Groups:", len("Username:"), "groupname", true)
	case "getgroup":
		g, _ := data["group"].(map[string]any)
		n, _ := str(g, "groupname")
		fmt.Fprintf(stdout, "Groupname: %s\n", n)
		named(g["roles"], "Roles:", len("Groupname:"), "rolename", true)
		if _, ok := g["clients"].([]any); ok {
			named(g["clients"], "Clients:", len("Groupname:"), "username", false)
		}
	case "getrole":
		ro, _ := data["role"].(map[string]any)
		n, _ := str(ro, "rolename")
		fmt.Fprintf(stdout, "Rolename: %s\n", n)
		acls, _ := ro["acls"].([]any)
		for i, it := range acls {
			m, _ := it.(map[string]any)
			t, ok := str(m, "acltype")
			if !ok {
				continue
			}
			label := ""
			if i == 0 {
				label = "ACLs:"
			}
			fmt.Fprintf(stdout, "%-9s %-20s", label, t)
			if allow, ok := m["allow"].(bool); ok {
				fmt.Fprint(stdout, map[bool]string{true: " : allow", false: " : deny "}[allow])
			}
			if topic, ok := str(m, "topic"); ok {
				fmt.Fprintf(stdout, " : %s", topic)
			}
			fmt.Fprintln(stdout, priority(m))
		}
	case "getdefaultaclaccess":
		acls, _ := data["acls"].([]any)
		for _, it := range acls {
			m, _ := it.(map[string]any)
			t, _ := str(m, "acltype")
			allow, _ := m["allow"].(bool)
			fmt.Fprintf(stdout, "%-20s : %s\n", t, map[bool]string{true: "allow", false: "deny"}[allow])
		}
	case "getanonymousgroup":
		g, _ := data["group"].(map[string]any)
		n, _ := str(g, "groupname")
		fmt.Fprintln(stdout, n)
	}
	return 0
}

// dynsecInit writes a new dynamic security file with an admin client that
// may administer dynamic security and read everything (as mosquitto_ctrl
// dynsec init does), refusing to overwrite an existing file.
func dynsecInit(a []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(a) < 2 || len(a) > 3 {
		fmt.Fprint(stderr, "Usage: midge ctrl dynsec init FILE ADMIN-USERNAME [ADMIN-PASSWORD]\n")
		return 1
	}
	file, user := a[0], a[1]
	pw := ""
	if len(a) == 3 {
		pw = a[2]
	} else {
		pw = promptPassword(user, stdin, stdout)
	}
	if pw == "" {
		fmt.Fprintln(stderr, "Error: the admin client needs a password.")
		return 1
	}
	// mosquitto 2.0's form (2.0 does not read 2.1's encoded_password):
	// PBKDF2-SHA512, 101 iterations, a 12-byte salt, all base64.
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	hash := pbkdf2.Key([]byte(pw), salt, auth.DefaultIterations, 64, sha512.New)
	acl := func(t, topic string) map[string]any {
		return map[string]any{"acltype": t, "topic": topic, "allow": true}
	}
	const ctl = "$CONTROL/dynamic-security/#"
	doc := map[string]any{
		"clients": []any{map[string]any{"username": user, "textname": "Dynsec admin user",
			"password": base64.StdEncoding.EncodeToString(hash), "salt": base64.StdEncoding.EncodeToString(salt),
			"iterations": auth.DefaultIterations, "roles": []any{map[string]any{"rolename": "admin"}}}},
		"roles": []any{map[string]any{"rolename": "admin", "acls": []any{
			acl("publishClientSend", ctl), acl("publishClientReceive", ctl), acl("subscribePattern", ctl),
			acl("publishClientReceive", "$SYS/#"), acl("subscribePattern", "$SYS/#"),
			acl("publishClientReceive", "#"), acl("subscribePattern", "#"), acl("unsubscribePattern", "#")}}},
		"defaultACLAccess": map[string]bool{"publishClientSend": false, "publishClientReceive": true,
			"subscribe": false, "unsubscribe": true},
	}
	b, _ := json.MarshalIndent(doc, "", "\t")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if err := f.Close(); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "Client %q created in %s: it may administer dynamic security and read every topic, but publish to none.\n", user, file)
	return 0
}
