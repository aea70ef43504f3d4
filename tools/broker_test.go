package tools

import (
	"testing"

	"github.com/midge-mqtt/midge/internal/mosquittotest"
)

// startBroker runs Debian's mosquitto for one test (failing, never skipping,
// when it is missing).
func startBroker(t testing.TB, extra ...string) string { return mosquittotest.Start(t, extra...) }
