// Command midge is an MQTT broker (3.1, 3.1.1, 5.0) and mosquitto's tools in one binary.
//
//	midge [broker flags]        the broker (mosquitto's flags)
//	midge pub|sub|rr ...        mosquitto_pub, mosquitto_sub, mosquitto_rr
//	midge passwd ...            mosquitto_passwd
//	midge dump DIR              what the persistence store holds (mosquitto's db_dump)
//	midge bench SCENARIO ...    the load generator
package main

import (
	"io"
	"os"

	"github.com/midge-mqtt/midge/bench"
	"github.com/midge-mqtt/midge/tools"
)

// subcommands maps `midge NAME` to the tool that implements it.
var subcommands = map[string]func(args []string, stdin io.Reader, stdout, stderr io.Writer) int{
	"pub":    tools.Pub,
	"sub":    tools.Sub,
	"rr":     tools.RR,
	"passwd": tools.Passwd,
	"dump":   tools.Dump,
	"bench": func(args []string, _ io.Reader, stdout, stderr io.Writer) int {
		return bench.Main(args, stdout, stderr)
	},
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		if tool, ok := subcommands[args[0]]; ok {
			return tool(args[1:], os.Stdin, os.Stdout, os.Stderr)
		}
	}
	return runBroker(args, os.Stderr)
}
