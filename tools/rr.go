package tools

import (
	"io"
	"os"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

const rrUsage = `midge rr sends a request and prints the first response (MQTT 5 request/response).

Usage: midge rr {-t topic | -L URL} -e response-topic {-m message | -f file | -s | -n}
                [-q qos] [-v] [-F format] [-N] [-W secs] [options]

 -t topic     request topic                        -e topic     response topic to wait on
 -m text      request payload                      -f file      payload is the file's contents
 -s           payload is all of stdin              -n           empty (null) payload
 -v -F -N -W  as for midge sub
` + connUsage

// RR is midge rr: mosquitto_rr(1) on the midge client. It subscribes to the
// response topic, publishes the request with the Response Topic property
// (v5), prints the first message that arrives there and exits.
func RR(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(toolRR, args)
	if err == nil && cfg.format != "" {
		err = checkFormat(cfg.format)
	}
	if err != nil {
		return usage(toolRR, err, rrUsage, stdout, stderr)
	}
	r := &run{t: toolRR, cfg: cfg, out: &syncWriter{w: stdout}, stderr: stderr}
	req := &client.Message{Topic: []byte(cfg.topics[0]), QoS: cfg.qos, Props: cfg.propsFor("publish")}
	switch cfg.mode {
	case msgArg:
		req.Payload = []byte(cfg.message)
	case msgFile:
		if req.Payload, err = os.ReadFile(cfg.file); err != nil {
			r.errorf("Error: Unable to open file \"%s\".\n", cfg.file)
			return 1
		}
	case msgStdin:
		if req.Payload, err = io.ReadAll(stdin); err != nil {
			r.errorf("Error: %v\n", err)
			return 1
		}
	}
	if cfg.version == codec.Version5 {
		if req.Props == nil {
			req.Props = &codec.Properties{}
		}
		req.Props.ResponseTopic = []byte(cfg.responseTopic) // [MQTT-3.3.2-13]
		req.Props.Set(codec.PropResponseTopic)
	}
	return r.receive(req)
}
