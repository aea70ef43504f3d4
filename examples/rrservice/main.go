// Command rrservice answers MQTT 5 requests: it subscribes to a request
// topic and sends each reply to the request's Response Topic with its
// Correlation Data, so that a requester with several requests in flight
// knows which reply is which. This is what `midge rr` (mosquitto_rr) talks to:
//
//	go run ./examples/rrservice -addr 127.0.0.1:1883
//	midge rr -t service/upper -e replies/me -m hello     # → HELLO
package main

import (
	"bytes"
	"context"
	"flag"
	"log"
	"os"
	"os/signal"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// request is what the reader hands to the replying loop (the message's
// slices are borrowed until OnMessage returns, so they are copied).
type request struct {
	payload, responseTopic, correlation []byte
}

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "broker `host:port`")
	topic := flag.String("t", "service/upper", "request topic")
	count := flag.Int("count", 0, "stop after this many replies (0: run until interrupted)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := client.New(client.Options{Addr: *addr, Version: codec.Version5, ClientID: "rrservice", CleanStart: true, KeepAlive: 60})
	reqs := make(chan request, 64)
	c.OnMessage = func(m *client.Message) {
		if m.Props == nil || len(m.Props.ResponseTopic) == 0 {
			log.Printf("request on %s without a response topic: dropped", m.Topic)
			return
		}
		reqs <- request{bytes.Clone(m.Payload), bytes.Clone(m.Props.ResponseTopic), bytes.Clone(m.Props.CorrelationData)}
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Disconnect(codec.Success, nil)
	if _, err := c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte(*topic), QoS: 1}); err != nil {
		log.Fatal(err)
	}
	log.Printf("serving %s", *topic)
	for n := 0; *count == 0 || n < *count; n++ {
		var r request
		select {
		case <-ctx.Done():
			return
		case r = <-reqs:
		}
		props := &codec.Properties{}
		if r.correlation != nil {
			props.CorrelationData = r.correlation
			props.Set(codec.PropCorrelationData)
		}
		reply := &client.Message{Topic: r.responseTopic, Payload: bytes.ToUpper(r.payload), QoS: 1, Props: props}
		if err := c.Publish(ctx, reply); err != nil {
			log.Fatal(err)
		}
	}
}
