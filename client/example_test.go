package client_test

import (
	"context"
	"fmt"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// A subscriber and a publisher on one broker: QoS 1 publish, delivery
// through OnMessage, then a clean DISCONNECT.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	sub := client.New(client.Options{Addr: client.BrokerForExamples(), ClientID: "example-sub", CleanStart: true})
	got := make(chan string, 1)
	sub.OnMessage = func(m *client.Message) {
		// m's slices are borrowed: copy what must outlive the callback.
		got <- fmt.Sprintf("%s %s qos=%d", m.Topic, m.Payload, m.QoS)
	}
	if err := sub.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}
	codes, _ := sub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("sensors/+"), QoS: 1})
	fmt.Println("granted", codes)

	pub := client.New(client.Options{Addr: client.BrokerForExamples(), ClientID: "example-pub", CleanStart: true})
	if err := pub.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}
	err := pub.Publish(ctx, &client.Message{Topic: []byte("sensors/t1"), Payload: []byte("21.5"), QoS: 1})
	fmt.Println("published", err)
	fmt.Println(<-got)
	pub.Disconnect(codec.Success, nil)
	sub.Disconnect(codec.Success, nil)
	// Output:
	// granted [1]
	// published <nil>
	// sensors/t1 21.5 qos=1
}

// MQTT 5: connect with a session expiry, publish with properties and read
// them back through a subscription identifier.
func ExampleClient_Subscribe_v5() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	o := client.Options{Addr: client.BrokerForExamples(), Version: codec.Version5, ClientID: "example-v5", CleanStart: true}
	o.Props.SessionExpiry = 30
	o.Props.Set(codec.PropSessionExpiry)
	c := client.New(o)
	got := make(chan string, 1)
	c.OnMessage = func(m *client.Message) {
		got <- fmt.Sprintf("%s %s ids=%v type=%s", m.Topic, m.Payload, m.Props.SubscriptionIDs, m.Props.ContentType)
	}
	if err := c.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}
	c.Subscribe(ctx, &codec.Properties{SubscriptionIDs: []uint32{7}}, codec.Subscription{Filter: []byte("v5/#"), QoS: 2})
	props := &codec.Properties{ContentType: []byte("text/plain")}
	props.Set(codec.PropContentType)
	c.Publish(ctx, &client.Message{Topic: []byte("v5/a"), Payload: []byte("hi"), QoS: 2, Props: props})
	fmt.Println(<-got)
	c.Disconnect(codec.Success, nil)
	// Output:
	// v5/a hi ids=[7] type=text/plain
}
