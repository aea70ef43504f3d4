package client

import (
	"fmt"
	"os"
	"testing"

	"github.com/midge-mqtt/midge/internal/mosquittotest"
)

// startBroker runs Debian's mosquitto for one test (failing, never skipping,
// when it is missing).
func startBroker(t testing.TB, extra ...string) string { return mosquittotest.Start(t, extra...) }

// exampleAddr is the broker the runnable examples talk to.
var exampleAddr string

func TestMain(m *testing.M) {
	dir, _ := os.MkdirTemp("", "midge-client")
	addr, stop, err := mosquittotest.Run(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exampleAddr = addr
	code := m.Run()
	stop()
	os.RemoveAll(dir)
	os.Exit(code)
}
