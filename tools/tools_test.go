package tools

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/internal/mosquittotest"
)

// result is what one tool run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// runMidge runs one of Pub/Sub/RR in-process, bounded to 15s.
func runMidge(t *testing.T, fn func([]string, *bytes.Reader, *bytes.Buffer, *bytes.Buffer) int, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- fn(args, bytes.NewReader([]byte(stdin)), &out, &errb) }()
	select {
	case code := <-done:
		return result{out.String(), errb.String(), code}
	case <-time.After(15 * time.Second):
		t.Fatalf("midge %v did not finish within 15s", args)
	}
	return result{}
}

func pub(args []string, in *bytes.Reader, out, errb *bytes.Buffer) int {
	return Pub(args, in, out, errb)
}
func sub(args []string, in *bytes.Reader, out, errb *bytes.Buffer) int {
	return Sub(args, in, out, errb)
}
func rr(args []string, in *bytes.Reader, out, errb *bytes.Buffer) int { return RR(args, in, out, errb) }

// runMosquitto runs Debian's mosquitto_<name>, bounded to 15s.
func runReference(t *testing.T, name, stdin string, args ...string) result {
	t.Helper()
	path := "/usr/bin/mosquitto_" + name
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: run `make deps` to install mosquitto-clients", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mosquitto_%s %v did not finish within 15s", name, args)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("mosquitto_%s: %v", name, err)
	}
	return result{out.String(), errb.String(), code}
}

// firstLine is the "Error: ..." line both tools print for a usage error.
func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// TestUsageErrors compares midge's message and exit code for bad command
// lines with mosquitto's tools, which run with the same arguments.
func TestUsageErrors(t *testing.T) {
	cases := []struct {
		tool string
		args string
	}{
		{"pub", "-q 3 -t a -m x"}, {"pub", "-t a"}, {"pub", "--bogus"}, {"pub", "-p"}, {"pub", "-t a -m x -V 7"},
		{"pub", "-t a -m x -k 2"}, {"pub", "-t a -m x -s"}, {"pub", "-t a/# -m x"}, {"pub", "-h"}, {"pub", "-t"},
		{"pub", "-x abc"}, {"pub", "-D"}, {"pub", "-D connect foo 1"}, {"pub", "-D publish receive-maximum 1"},
		{"pub", "-D foo content-type x"}, {"pub", "-D connect receive-maximum 70000"}, {"pub", "--will-qos 3"},
		{"pub", "--will-payload x -t a -m x"}, {"pub", "--repeat 0"}, {"pub", "-c -t a -m x"},
		{"pub", "-i abc -I d"}, {"pub", "-L http://x"}, {"pub", "-v -t a -m x"}, {"pub", "--help"},
		{"sub", ""}, {"sub", "-C 0 -t a"}, {"sub", "-W 0 -t a"}, {"sub", "-t a# -W 1"}, {"sub", "-T"},
		{"sub", "-t a -R --retained-only"}, {"sub", "-t a -q 3"}, {"sub", "-t a -F %z"}, {"sub", "-t a -F %5"},
		{"sub", `-t a -F \z`}, {"sub", `-t a -F x\`}, {"sub", "-t a -m x"}, {"sub", "--help"},
		{"rr", "-t a -m x"},
	}
	fns := map[string]func([]string, *bytes.Reader, *bytes.Buffer, *bytes.Buffer) int{"pub": pub, "sub": sub, "rr": rr}
	for _, tc := range cases {
		t.Run(tc.tool+" "+tc.args, func(t *testing.T) {
			args := strings.Fields(tc.args)
			want := runReference(t, tc.tool, "", args...)
			got := runMidge(t, fns[tc.tool], "", args...)
			if got.code != want.code || firstLine(got.stderr) != firstLine(want.stderr) {
				t.Fatalf("midge: code %d %q\nmosquitto: code %d %q", got.code, firstLine(got.stderr), want.code, firstLine(want.stderr))
			}
		})
	}
}

// session prepares a persistent QoS 1 session for id with mosquitto_sub -E,
// so that messages published next are queued for it: the comparison that
// follows needs no sleeps.
func session(t *testing.T, port, id, filter string) {
	t.Helper()
	if r := runReference(t, "sub", "", "-p", port, "-c", "-i", id, "-q", "1", "-t", filter, "-E"); r.code != 0 {
		t.Fatalf("prepare session %s: %+v", id, r)
	}
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

var tst = regexp.MustCompile(`"tst":\s*"[^"]*"`)

// TestSubMatchesMosquitto queues the same messages for a midge sub and a
// mosquitto_sub session and compares their output byte for byte.
func TestSubMatchesMosquitto(t *testing.T) {
	addr := startBroker(t)
	port := portOf(addr)
	flagSets := []string{
		"", "-v", "-N", "-v -N", "-F %t|%p|%q|%r|%l|%x|%X|%m", "-F %5t|%-6t|%.2t|%08l|%-4l.",
		`-F %t\t%p\0\\\n`, "-F %j", "-F %j --pretty", "-F %C|%D|%E|%F|%P|%R|%S|%A", "-F @@%%",
	}
	binary := string([]byte{0, 1, 2, 0xff, '\n', '"', '\\'})
	for i, flags := range flagSets {
		for _, ver := range []string{"311", "5"} {
			t.Run(fmt.Sprintf("V%s %s", ver, flags), func(t *testing.T) {
				topic := fmt.Sprintf("cmp/%s/%d", ver, i)
				ids := []string{"mq-" + topic, "mg-" + topic}
				for _, id := range ids {
					session(t, port, id, topic+"/#")
				}
				msgs := [][]string{
					{"-m", "hello world"}, {"-n"}, {"-s"}, {"-m", `{"a":[1,2]}`, "-q", "2"},
					{"-m", "props", "-V", "5", "-D", "publish", "content-type", "text/plain", "-D", "publish", "user-property", "k", "v",
						"-D", "publish", "response-topic", "r/t", "-D", "publish", "correlation-data", "cd", "-D", "publish", "payload-format-indicator", "1"},
				}
				for j, m := range msgs {
					args := append([]string{"-p", port, "-q", "1", "-t", fmt.Sprintf("%s/%d", topic, j)}, m...)
					if r := runReference(t, "pub", binary, args...); r.code != 0 {
						t.Fatalf("mosquitto_pub %v: %+v", args, r)
					}
				}
				common := []string{"-p", port, "-c", "-q", "1", "-t", topic + "/#", "-C", fmt.Sprint(len(msgs)), "-V", ver}
				common = append(common, splitFlags(flags)...)
				want := runReference(t, "sub", "", append(common, "-i", ids[0])...)
				got := runMidge(t, sub, "", append(common, "-i", ids[1])...)
				w, g := tst.ReplaceAllString(want.stdout, `"tst":""`), tst.ReplaceAllString(got.stdout, `"tst":""`)
				if w != g || got.code != want.code || got.stderr != want.stderr {
					t.Fatalf("flags %q\nmidge (%d): %q %q\nmosquitto (%d): %q %q", flags, got.code, g, got.stderr, want.code, w, want.stderr)
				}
			})
		}
	}
}

// splitFlags splits "-F fmt with spaces" into a flag and the rest as one value.
func splitFlags(s string) []string {
	if s == "" {
		return nil
	}
	if strings.HasPrefix(s, "-F ") {
		rest := s[3:]
		if strings.HasSuffix(rest, " --pretty") {
			return []string{"-F", strings.TrimSuffix(rest, " --pretty"), "--pretty"}
		}
		return []string{"-F", rest}
	}
	return strings.Fields(s)
}

// TestPubToMosquittoSub publishes with midge pub in every payload mode and
// checks what mosquitto_sub receives.
func TestPubToMosquittoSub(t *testing.T) {
	addr := startBroker(t)
	port := portOf(addr)
	file := filepath.Join(t.TempDir(), "payload.bin")
	os.WriteFile(file, []byte("file\x00contents"), 0o600)
	cases := []struct {
		name  string
		stdin string
		args  []string
		want  string // mosquitto_sub -F '%r %q %t %x' output
	}{
		{"message", "", []string{"-m", "hi"}, "0 1 t 6869\n"},
		{"null", "", []string{"-n"}, "0 1 t \n"},
		{"file", "", []string{"-f", file}, "0 1 t 66696c6500636f6e74656e7473\n"},
		{"stdin", "all\nof it", []string{"-s"}, "0 1 t 616c6c0a6f66206974\n"},
		{"lines", "a\nbb\n", []string{"-l"}, "0 1 t 61\n0 1 t 6262\n"},
		{"repeat qos2", "", []string{"-m", "r", "-q", "2", "--repeat", "3"}, "0 1 t 72\n0 1 t 72\n0 1 t 72\n"},
		{"v31", "", []string{"-m", "old", "-V", "mqttv31", "-i", "old"}, "0 1 t 6f6c64\n"},
		{"v5 props", "", []string{"-m", "p", "-D", "publish", "content-type", "ct", "-D", "publish", "user-property", "a", "b"}, "0 1 t 70 ct a:b\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "pubcheck-" + strings.ReplaceAll(tc.name, " ", "-")
			session(t, port, id, "t")
			r := runMidge(t, pub, tc.stdin, append([]string{"-p", port, "-t", "t", "-q", "1"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("midge pub: %+v", r)
			}
			lines := strings.Count(tc.want, "\n")
			format := "%r %q %t %x"
			if strings.HasPrefix(tc.name, "v5") {
				format += " %C %P"
			}
			got := runReference(t, "sub", "", "-p", port, "-c", "-i", id, "-q", "1", "-t", "t", "-V", "5", "-C", fmt.Sprint(lines), "-F", format)
			if got.stdout != tc.want {
				t.Fatalf("mosquitto_sub got %q, want %q (%s)", got.stdout, tc.want, got.stderr)
			}
		})
	}
	// Retained: a later subscriber sees the flag; -n -r clears it [MQTT-3.3.1-10].
	runMidge(t, pub, "", "-p", port, "-t", "ret", "-m", "kept", "-r")
	if got := runReference(t, "sub", "", "-p", port, "-t", "ret", "-C", "1", "-F", "%r %p"); got.stdout != "1 kept\n" {
		t.Fatalf("retained: %q", got.stdout)
	}
	runMidge(t, pub, "", "-p", port, "-t", "ret", "-n", "-r")
	if got := runReference(t, "sub", "", "-p", port, "-t", "ret", "-W", "1"); got.code != 27 || got.stdout != "" {
		t.Fatalf("cleared retained still delivered: %+v", got)
	}
}

// TestSubStops checks -W, -E, --retained-only, -R and -T against mosquitto_sub.
func TestSubStops(t *testing.T) {
	addr := startBroker(t)
	port := portOf(addr)
	runReference(t, "pub", "", "-p", port, "-t", "s/keep", "-m", "k", "-r")
	runReference(t, "pub", "", "-p", port, "-t", "s/skip", "-m", "s", "-r")
	cases := [][]string{
		{"-t", "s/#", "-W", "1"},
		{"-t", "s/#", "-E"},
		{"-t", "s/#", "--retained-only", "-W", "1", "-v"},
		{"-t", "s/#", "-R", "-W", "1"},
		{"-t", "s/#", "-T", "s/skip", "-W", "1", "-v"},
		{"-t", "s/#", "-U", "s/#", "-W", "1"},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			args = append([]string{"-p", port}, args...)
			want := runReference(t, "sub", "", args...)
			got := runMidge(t, sub, "", args...)
			if got != want {
				t.Fatalf("midge %+v\nmosquitto %+v", got, want)
			}
		})
	}
}

// TestConnectErrors compares refused connections: TCP refused and a broker
// that requires a password, at each protocol level.
func TestConnectErrors(t *testing.T) {
	addr := startBroker(t, "allow_anonymous false")
	port := portOf(addr)
	closed := fmt.Sprint(mustFreePort(t))
	cases := [][]string{
		{"-p", closed, "-t", "a"},
		{"-p", port, "-t", "a"},
		{"-p", port, "-t", "a", "-V", "5"},
		{"-p", port, "-t", "a", "-V", "31"},
		{"-p", port, "-t", "a", "--quiet"},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			for _, tool := range []string{"pub", "sub"} {
				a := args
				if tool == "pub" {
					a = append(a, "-m", "x")
				}
				want := runReference(t, tool, "", a...)
				fn := map[string]func([]string, *bytes.Reader, *bytes.Buffer, *bytes.Buffer) int{"pub": pub, "sub": sub}[tool]
				got := runMidge(t, fn, "", a...)
				if got != want {
					t.Fatalf("%s: midge %+v\nmosquitto %+v", tool, got, want)
				}
			}
		})
	}
}

func mustFreePort(t *testing.T) int {
	p, err := mosquittotest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRR answers a request from a client responder and compares midge rr's
// output with mosquitto_rr's for the same flags [MQTT-4.10.0-1].
func TestRR(t *testing.T) {
	addr := startBroker(t)
	port := portOf(addr)
	resp := client.New(client.Options{Addr: addr, Version: codec.Version5, ClientID: "responder", CleanStart: true})
	resp.OnMessage = func(m *client.Message) {
		if m.Props == nil || !m.Props.Has(codec.PropResponseTopic) {
			return
		}
		reply := &client.Message{Topic: append([]byte(nil), m.Props.ResponseTopic...), Payload: append([]byte("re:"), m.Payload...)}
		resp.PublishAsync(context.Background(), reply, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := resp.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	if _, err := resp.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("req/#")}); err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{{}, {"-v"}, {"-F", "%t %p %l"}, {"-N"}} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			args := append([]string{"-p", port, "-t", "req/1", "-e", "resp/1", "-m", "ping", "-W", "5"}, flags...)
			want := runReference(t, "rr", "", args...)
			got := runMidge(t, rr, "", args...)
			if got != want || got.code != 0 {
				t.Fatalf("midge %+v\nmosquitto %+v", got, want)
			}
		})
	}
}

// TestOptionsFromFlags checks that will, credentials, session and CONNECT
// property flags reach the client options.
func TestOptionsFromFlags(t *testing.T) {
	cfg, err := parseArgs(toolSub, []string{"-t", "a", "-c", "-i", "me", "-u", "user", "-P", "pw", "-k", "30",
		"--will-topic", "w", "--will-payload", "bye", "--will-qos", "2", "--will-retain",
		"-D", "connect", "receive-maximum", "10", "-D", "will", "will-delay-interval", "5", "-x", "100"})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: toolSub, cfg: cfg}
	o, err := r.options()
	if err != nil {
		t.Fatal(err)
	}
	w := o.Will
	if o.Version != codec.Version5 || o.CleanStart || o.ClientID != "me" || o.Username != "user" || string(o.Password) != "pw" ||
		o.KeepAlive != 30 || w == nil || string(w.Topic) != "w" || string(w.Payload) != "bye" || w.QoS != 2 || !w.Retain ||
		w.Props.WillDelay != 5 || o.Props.ReceiveMaximum != 10 || o.Props.SessionExpiry != 100 {
		t.Fatalf("options: %+v will %+v", o, w)
	}
}
