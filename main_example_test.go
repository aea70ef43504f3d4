package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/config"
)

// exampleConf is the annotated example Debian's mosquitto package installs
// (mosquitto.conf.example upstream).
const exampleConf = "/usr/share/doc/mosquitto/examples/mosquitto.conf"

// refusedByMosquittoToo are example lines that mosquitto 2.0.11 itself
// refuses, with the reason; midge refuses them as well.
var refusedByMosquittoToo = map[string]string{
	"max_packet_size 0": "mosquitto: Invalid max_packet_size value (0)",
}

// TestExampleConfigAccepted: every key the example file shows commented out
// with a value, uncommented at that value (up to the bridge section, whose
// examples name remote hosts; bridges have their own tests), is accepted by
// midge's configuration and setup, except the lines mosquitto refuses too.
func TestExampleConfigAccepted(t *testing.T) {
	f, err := os.Open(exampleConf)
	if err != nil {
		t.Skipf("%s not installed (make deps installs Debian's mosquitto): %v", exampleConf, err)
	}
	defer f.Close()
	key := regexp.MustCompile(`^#([a-z_0-9.]+) (\S.*)$`)
	var b strings.Builder
	uncommented := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#connection ") {
			break // the bridge section
		}
		if m := key.FindStringSubmatch(line); m != nil {
			line = line[1:]
			if why, ok := refusedByMosquittoToo[line]; ok {
				checkRefused(t, line, why)
				line = "#" + line
			} else {
				uncommented++
			}
		}
		b.WriteString(line + "\n")
	}
	if uncommented < 30 {
		t.Fatalf("only %d keys uncommented: has the example's layout changed?", uncommented)
	}
	cfg, err := config.ParseReader(exampleConf, strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("the example, uncommented: %v", err)
	}
	if _, err := newSetup(cfg, false, nil, io.Discard); err != nil {
		t.Fatalf("setup: %v", err)
	}
}

// checkRefused checks that midge refuses line, and that mosquitto does too
// when it is installed.
func checkRefused(t *testing.T, line, why string) {
	t.Helper()
	if _, err := config.ParseReader("x.conf", strings.NewReader(line+"\n")); err == nil {
		t.Errorf("midge accepts %q, which mosquitto refuses (%s)", line, why)
	}
	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		mosq = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(mosq); err != nil {
		t.Logf("mosquitto not installed: not checking that it refuses %q", line)
		return
	}
	conf := filepath.Join(t.TempDir(), "m.conf")
	writeFile(t, conf, line+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // were it to start
	defer cancel()
	out, err := exec.CommandContext(ctx, mosq, "-c", conf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Error") {
		t.Errorf("mosquitto accepts %q: %v %s", line, err, out)
	}
}
