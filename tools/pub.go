package tools

import (
	"bufio"
	"context"
	"io"
	"os"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/client"
)

const connUsage = ` -h host      broker host (localhost)             -p port      broker port (1883, 8883 with TLS)
 -L URL       mqtt(s)://[user[:pass]@]host[:port]/topic
 -u user      username                             -P pass      password
 -i id        client id                            -I prefix    client id = prefix + process id
 -k secs      keepalive (60; 0 disables)           -c           persistent session (needs -i)
 -x secs      v5 session expiry (-1: never)        -V version   mqttv31|mqttv311|mqttv5 (31|311|5)
 -q qos       0, 1 or 2                            -A addr      bind the outgoing socket to addr
 -D command property [name] value                  v5 property for CONNECT, PUBLISH, SUBSCRIBE,
                                                   UNSUBSCRIBE, DISCONNECT or WILL
 -d           print every packet                   --quiet      print no error messages
 --will-topic topic [--will-payload text] [--will-qos qos] [--will-retain]
 --unix path  connect to the broker's Unix domain socket instead of host and port
 --cafile file  --capath dir  --cert file  --key file  --insecure  --tls-version tlsv1.2|tlsv1.3
 --ciphers list  --tls-alpn protocol  --tls-use-os-certs  --keyform pem
 --help       this text
 Not available: --psk, --psk-identity (no TLS-PSK in Go), --proxy, --tls-engine.
`

const pubUsage = `midge pub publishes one message, or one per line of input, and exits.

Usage: midge pub {-t topic | -L URL} {-m message | -f file | -s | -l | -n}
                 [-r] [-q qos] [--repeat N] [--repeat-delay secs] [-M max_inflight] [options]

 -t topic     topic to publish on                  -m text      message payload
 -f file      payload is the file's contents       -s           payload is all of stdin
 -l           one message per line of stdin        -n           empty (null) payload
 -r           retain the message                   -M n         QoS 1/2 messages in flight (20)
 --repeat N   publish N times                      --repeat-delay secs   pause between repeats
` + connUsage

// Pub is midge pub: mosquitto_pub(1) on the midge client.
func Pub(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(toolPub, args)
	if err != nil {
		return usage(toolPub, err, pubUsage, stdout, stderr)
	}
	r := &run{t: toolPub, cfg: cfg, out: &syncWriter{w: stdout}, stderr: stderr}
	var payload []byte
	switch cfg.mode {
	case msgArg:
		payload = []byte(cfg.message)
	case msgFile:
		if payload, err = os.ReadFile(cfg.file); err != nil {
			r.errorf("Error: Unable to open file \"%s\".\n", cfg.file)
			return 1
		}
	case msgStdin:
		if payload, err = io.ReadAll(stdin); err != nil {
			r.errorf("Error: %v\n", err)
			return 1
		}
	}
	if code, ok := r.connect(nil); !ok {
		return code
	}
	p := &publisher{r: r}
	if cfg.mode == msgLines {
		in := bufio.NewReader(stdin)
		for {
			line, err := in.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			if err == nil || len(line) > 0 {
				if !p.send(line) {
					break
				}
			}
			if err != nil {
				break
			}
		}
	} else {
		for i := 0; i < cfg.repeat; i++ {
			if i > 0 && cfg.repeatDelay > 0 {
				time.Sleep(time.Duration(cfg.repeatDelay * float64(time.Second)))
			}
			if !p.send(payload) {
				break
			}
		}
	}
	acked := make(chan struct{})
	go func() { p.wg.Wait(); close(acked) }()
	select {
	case <-acked:
	case <-r.cli.Done():
		select {
		case <-acked:
		default:
			r.errorf("Error: %v\n", r.cli.Err())
			return 1
		}
	}
	if p.failed() {
		r.cli.Close()
		return 1
	}
	r.disconnect()
	return 0
}

// publisher keeps QoS 1/2 messages in flight and waits for them at the end.
type publisher struct {
	r   *run
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

func (p *publisher) send(payload []byte) bool {
	cfg := p.r.cfg
	m := &client.Message{Topic: []byte(cfg.topics[0]), Payload: payload, QoS: cfg.qos, Retain: cfg.retain,
		Props: cfg.propsFor("publish")}
	p.wg.Add(1)
	err := p.r.cli.PublishAsync(context.Background(), m, func(err error) {
		if err != nil {
			p.fail(err)
		}
		p.wg.Done()
	})
	if err != nil {
		p.wg.Done()
		p.fail(err)
		return false
	}
	return true
}

func (p *publisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
		p.r.errorf("Error: %v\n", err)
	}
}

func (p *publisher) failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}
