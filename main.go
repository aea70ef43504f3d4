// Command midge is an MQTT broker (3.1, 3.1.1, 5.0) and mosquitto's tools in one binary.
//
//	midge [broker flags]        the broker (mosquitto's flags)
//	midge pub|sub|rr ...        mosquitto_pub, mosquitto_sub, mosquitto_rr
//	midge passwd ...            mosquitto_passwd
//	midge dump DIR              what the persistence store holds (mosquitto's db_dump)
//	midge ctrl ... dynsec CMD   administer dynamic security (mosquitto_ctrl's dynsec module)
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
	"ctrl":   tools.Ctrl,
	"bench": func(args []string, _ io.Reader, stdout, stderr io.Writer) int {
		return bench.Main(args, stdout, stderr)
	},
}

func init() { subcommands["man"] = writeManPages } // it reads the other entries

func main() {
	os.Exit(run(os.Args[1:]))
}

// commands are the subcommands in the order `midge --help` lists them,
// with their one-line summaries.
var commands = []struct{ name, summary string }{
	{"pub", "publish a message, or one per input line (mosquitto_pub)"},
	{"sub", "subscribe and print what arrives (mosquitto_sub)"},
	{"rr", "send an MQTT 5 request and print the response (mosquitto_rr)"},
	{"passwd", "manage a password file (mosquitto_passwd)"},
	{"dump", "print what a persistence store holds (mosquitto's db_dump)"},
	{"ctrl", "administer dynamic security over MQTT (mosquitto_ctrl dynsec)"},
	{"bench", "generate load against a broker and measure it"},
	{"man", "write the man pages of midge and its commands into a directory"},
}

func run(args []string) int {
	if len(args) > 0 {
		if tool, ok := subcommands[args[0]]; ok {
			return tool(args[1:], os.Stdin, os.Stdout, os.Stderr)
		}
		if args[0] == "help" {
			if len(args) > 1 {
				if tool, ok := subcommands[args[1]]; ok {
					return tool([]string{"--help"}, os.Stdin, os.Stdout, os.Stderr)
				}
			}
			printUsage(os.Stdout)
			return 0
		}
	}
	return runBroker(args, os.Stderr)
}
