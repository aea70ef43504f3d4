// Command temperature is mosquitto's temperature conversion example, on
// midge's client: it subscribes to Celsius readings and publishes each one
// again in Fahrenheit.
//
//	go run ./examples/temperature -addr 127.0.0.1:1883
//	midge pub -t temperature/celsius -m 21.5     # → temperature/fahrenheit 70.7
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "broker `host:port`")
	in := flag.String("in", "temperature/celsius", "topic of the Celsius readings")
	out := flag.String("out", "temperature/fahrenheit", "topic to publish Fahrenheit on")
	count := flag.Int("count", 0, "stop after this many conversions (0: run until interrupted)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := client.New(client.Options{Addr: *addr, ClientID: "temperature-converter", CleanStart: true, KeepAlive: 60})
	// OnMessage runs on the client's reader: hand readings to the loop
	// below, which publishes (a QoS 1 publish waits for its PUBACK, which
	// that same reader receives).
	readings := make(chan string, 64)
	c.OnMessage = func(m *client.Message) { readings <- string(m.Payload) }
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Disconnect(codec.Success, nil)
	if _, err := c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte(*in), QoS: 1}); err != nil {
		log.Fatal(err)
	}
	log.Printf("converting %s to %s", *in, *out)
	for n := 0; *count == 0 || n < *count; {
		select {
		case <-ctx.Done():
			return
		case r := <-readings:
			celsius, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
			if err != nil {
				log.Printf("not a temperature: %q", r)
				continue
			}
			f := strconv.FormatFloat(celsius*9/5+32, 'f', 1, 64)
			if err := c.Publish(ctx, &client.Message{Topic: []byte(*out), Payload: []byte(f), QoS: 1}); err != nil {
				log.Fatal(err)
			}
			fmt.Printf("%s °C = %s °F\n", r, f)
			n++
		}
	}
}
