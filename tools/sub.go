package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

const subUsage = `midge sub subscribes to topics and prints the messages it receives.

Usage: midge sub {-t topic ... | -L URL} [-q qos] [-v] [-F format] [-N] [-C count] [-W secs]
                 [-R | --retained-only] [-T filter ...] [-U topic ...] [-E] [--remove-retained] [options]

 -t filter    subscribe to filter (repeatable)     -T filter    do not print topics matching it
 -U filter    unsubscribe from filter (repeatable) -E           exit once subscriptions are acked
 -v           print "topic payload"                -N           no newline after each message
 -F format    custom output: %t topic, %p payload, %q qos, %r retained, %m mid, %l length,
              %x/%X hex payload, %I ISO time, %U unix time, %j/%J JSON, %A %C %D %E %F %P %R %S
              v5 properties, @X strftime conversions, \n \t \0 \e escapes
 --pretty     indented JSON with %j/%J             -C count     exit after count messages
 -W secs      exit (code 27) when nothing arrives  -R           skip retained messages
 --retained-only   print retained messages, exit at the first live one
 --remove-retained clear each retained message received
 --retain-as-published  v5: keep the RETAIN flag of messages as published
 --random-filter pct    print only pct percent of the messages (0.1 to 100)
` + connUsage

// Sub is midge sub: mosquitto_sub(1) on the midge client.
func Sub(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(toolSub, args)
	if err == nil && cfg.format != "" {
		err = checkFormat(cfg.format)
	}
	if err != nil {
		return usage(toolSub, err, subUsage, stdout, stderr)
	}
	r := &run{t: toolSub, cfg: cfg, out: &syncWriter{w: stdout}, stderr: stderr}
	return r.receive(nil)
}

// receive connects, subscribes and prints messages until a stop condition:
// -C count, -W timeout, -E, --retained-only, or (for rr) one response
// after sending request.
func (r *run) receive(request *client.Message) int {
	cfg := r.cfg
	f := &formatter{format: cfg.format, verbose: cfg.verbose, noEOL: cfg.noEOL, pretty: cfg.pretty, now: time.Now}
	stop := make(chan int, 1)
	finish := func(code int) {
		select {
		case stop <- code:
		default:
		}
	}
	count := 0
	var buf []byte
	onMessage := func(m *client.Message) {
		if cfg.exitAfterSub {
			return // -E leaves as soon as SUBACK arrives, printing nothing
		}
		if count >= cfg.msgCount && cfg.msgCount > 0 {
			return
		}
		if cfg.retainedOnly && !m.Retain {
			finish(0)
			return
		}
		if cfg.noRetained && m.Retain {
			return
		}
		if cfg.randomFilter > 0 && cfg.randomFilter < 100 && rand.Float64()*100 >= cfg.randomFilter {
			return // --random-filter: print only this percentage
		}
		for _, fo := range cfg.filterOut {
			if topicMatch(fo, string(m.Topic)) {
				return
			}
		}
		if cfg.removeRetained && m.Retain && len(m.Payload) > 0 {
			// Clear it: an empty retained payload [MQTT-3.3.1-10]. Asynchronous
			// because this runs on the reader goroutine.
			r.cli.PublishAsync(context.Background(), &client.Message{Topic: m.Topic, QoS: m.QoS, Retain: true}, nil)
		}
		var err error
		buf, err = f.render(buf[:0], m)
		if err != nil {
			r.errorf("%v\n", err)
			return
		}
		r.out.Write(buf)
		count++
		if request != nil || (cfg.msgCount > 0 && count >= cfg.msgCount) {
			finish(0)
		}
	}
	if code, ok := r.connect(onMessage); !ok {
		return code
	}
	if code, ok := r.subscribe(); !ok {
		return code
	}
	if cfg.exitAfterSub {
		r.disconnect()
		return 0
	}
	if request != nil {
		if err := r.cli.Publish(context.Background(), request); err != nil {
			r.errorf("Error: %v\n", err)
			return 1
		}
	}
	var timeout <-chan time.Time
	if cfg.timeout > 0 {
		t := time.NewTimer(time.Duration(cfg.timeout) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(interrupt)
	for {
		select {
		case <-interrupt: // Ctrl-C ends a subscription normally, with DISCONNECT
			r.disconnect()
			return 0
		case code := <-stop:
			r.disconnect()
			return code
		case <-timeout:
			r.errorf("Timed out\n")
			r.disconnect()
			return 27 // MOSQ_ERR_TIMEOUT
		case <-r.cli.Done():
			select {
			case code := <-stop: // the server closed right after the last message
				return code
			default:
			}
			if r.t != toolSub {
				r.errorf("Error: %v\n", r.cli.Err())
				return 1
			}
			// mosquitto_sub reconnects (and subscribes again) until it is
			// stopped; with -c its session, and what was queued, resumes.
			if code, ok := r.resume(interrupt, timeout); !ok {
				return code
			}
		}
	}
}

// reconnectDelay is how long midge sub waits between attempts, as
// libmosquitto's default reconnect delay.
const reconnectDelay = time.Second

// resume reconnects a subscriber whose connection dropped, every
// reconnectDelay until the broker answers, and subscribes again. It gives up
// (ok false, with the exit code) when interrupted, timed out, or refused by
// the broker.
func (r *run) resume(interrupt <-chan os.Signal, timeout <-chan time.Time) (int, bool) {
	if r.cfg.debug && !r.cfg.quiet {
		fmt.Fprintf(r.out, "Connection lost (%v); reconnecting.\n", r.cli.Err())
	}
	for {
		select {
		case <-interrupt:
			return 0, false
		case <-timeout:
			r.errorf("Timed out\n")
			return 27, false
		case <-time.After(reconnectDelay):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.cli.Connect(ctx)
		cancel()
		var ce *client.ConnackError
		switch {
		case errors.As(err, &ce):
			r.errorf("Connection error: %s\n", client.ConnackText(ce.Version, ce.Code))
			return int(ce.Code), false
		case err != nil:
			continue // the broker is not back yet
		}
		return r.subscribe()
	}
}

// subscribe sends the -t subscriptions (one SUBSCRIBE) and the -U
// unsubscriptions; with -d it prints the granted codes as mosquitto_sub does.
func (r *run) subscribe() (int, bool) {
	cfg := r.cfg
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topics := cfg.topics
	if r.t == toolRR {
		topics = []string{cfg.responseTopic}
	}
	if len(topics) > 0 {
		subs := make([]codec.Subscription, len(topics))
		for i, t := range topics {
			subs[i] = codec.Subscription{Filter: []byte(t), QoS: cfg.qos,
				RetainAsPublished: cfg.retainAsPublished && cfg.version == codec.Version5}
		}
		codes, err := r.cli.Subscribe(ctx, cfg.propsFor("subscribe"), subs...)
		if err != nil {
			r.errorf("Error: %v\n", err)
			return 1, false
		}
		if cfg.debug && !cfg.quiet {
			parts := make([]string, len(codes))
			for i, c := range codes {
				parts[i] = fmt.Sprint(c)
			}
			fmt.Fprintf(r.out, "Subscribed (mid: %d): %s\n", 1, strings.Join(parts, ", "))
		}
		denied := 0
		for _, c := range codes {
			if c >= 0x80 {
				denied++
			}
		}
		if denied == len(codes) && len(codes) > 0 {
			r.errorf("All subscription requests were denied.\n")
		}
	}
	if len(cfg.unsubTopics) > 0 {
		filters := make([][]byte, len(cfg.unsubTopics))
		for i, t := range cfg.unsubTopics {
			filters[i] = []byte(t)
		}
		if _, err := r.cli.Unsubscribe(ctx, cfg.propsFor("unsubscribe"), filters...); err != nil {
			r.errorf("Error: %v\n", err)
			return 1, false
		}
	}
	return 0, true
}

// topicMatch reports whether topic matches filter, with '+' and '#' and the
// rule that wildcards at the first level do not match '$' topics [MQTT-4.7.2-1].
func topicMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true // also matches the parent level [MQTT-4.7.1-2]
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}
