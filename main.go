// Command midge is an MQTT broker (3.1, 3.1.1, 5.0) and mosquitto's tools in one binary.
//
//	midge [broker flags]      the broker
//	midge pub|sub|rr|passwd|dump|bench ...
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "pub", "sub", "rr", "passwd", "dump", "bench":
			fmt.Fprintf(os.Stderr, "midge %s: not built yet\n", args[0])
			return 1
		}
	}
	return runBroker(args, os.Stderr)
}
