package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// writeManPages is `midge man DIR`: a man page (section 1) for midge and
// for each subcommand, made from the very text their --help prints, so the
// two cannot drift apart.
func writeManPages(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "Usage: midge man DIR   (writes midge.1 and midge-COMMAND.1 into DIR)")
		if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintln(stdout, "Usage: midge man DIR   (writes midge.1 and midge-COMMAND.1 into DIR)")
			return 0
		}
		return 1
	}
	dir := args[0]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	var help bytes.Buffer
	printUsage(&help)
	pages := map[string]struct{ summary, text string }{
		"midge": {"MQTT broker and mosquitto's tools in one binary", help.String()},
	}
	for _, c := range commands {
		if c.name == "man" {
			continue
		}
		var out bytes.Buffer
		subcommands[c.name]([]string{"--help"}, nil, &out, io.Discard)
		pages["midge-"+c.name] = struct{ summary, text string }{c.summary, out.String()}
	}
	date := time.Now().UTC().Format("2006-01-02")
	for name, pg := range pages {
		path := filepath.Join(dir, name+".1")
		if err := os.WriteFile(path, []byte(roff(name, pg.summary, pg.text, date)), 0o644); err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, path)
	}
	return 0
}

// roff renders a help text as a man page: the text kept as laid out
// (no filling), escaped so that no line is taken for a request.
func roff(name, summary, text, date string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s 1 %s \"midge %s\" \"midge manual\"\n", strings.ToUpper(name), date, version)
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n.SH DESCRIPTION\n.nf\n", name, roffEscape(summary))
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(roffEscape(line) + "\n")
	}
	b.WriteString(".fi\n.SH SEE ALSO\nmosquitto(8), mosquitto.conf(5), mosquitto_pub(1), mosquitto_sub(1)\n")
	return b.String()
}

func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
