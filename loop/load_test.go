package loop

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/midge-mqtt/midge/codec"
)

// TestLoadV3 runs 1,000 concurrent clients over the broker's two loops:
// 500 raw-socket publishers (half QoS 1, half QoS 2) and 500
// paho.mqtt.golang subscribers, in 50 groups of 10 publishers and 10
// subscribers. Every subscriber must get every message of its group exactly
// once [MQTT-4.3.2] [MQTT-4.3.3] and, per publisher, in order
// [MQTT-4.6.0-5].
func TestLoadV3(t *testing.T) {
	const (
		groups     = 50
		publishers = 500
		subsN      = 500
		perPub     = 10
		want       = publishers / groups * perPub // messages per subscriber
	)
	tb := startBroker(t, nil)

	var (
		failMu sync.Mutex
		fails  []string
	)
	fail := func(format string, args ...any) {
		failMu.Lock()
		if len(fails) < 20 {
			fails = append(fails, fmt.Sprintf(format, args...))
		}
		failMu.Unlock()
	}
	failures := func() string {
		failMu.Lock()
		defer failMu.Unlock()
		return strings.Join(fails, "\n")
	}

	// Subscribers: each checks, per publisher, that sequence numbers come
	// one by one from 0.
	var done sync.WaitGroup
	done.Add(subsN)
	clients := make([]mqtt.Client, subsN)
	sem := make(chan struct{}, 50) // connect at most this many at once
	var wg sync.WaitGroup
	for j := 0; j < subsN; j++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(j int) {
			defer wg.Done()
			defer func() { <-sem }()
			var mu sync.Mutex
			next := map[int]int{}
			got := 0
			handler := func(_ mqtt.Client, m mqtt.Message) {
				pub, seq, ok := strings.Cut(string(m.Payload()), ":")
				p, _ := strconv.Atoi(pub)
				s, _ := strconv.Atoi(seq)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case !ok || p%groups != j%groups:
					fail("sub %d: message %q not of its group", j, m.Payload())
				case s != next[p]:
					fail("sub %d: publisher %d sent #%d, want #%d (duplicate or out of order)", j, p, s, next[p])
				}
				next[p] = s + 1
				if got++; got == want {
					done.Done()
				}
			}
			o := mqtt.NewClientOptions().AddBroker("tcp://" + tb.Addr).SetClientID(fmt.Sprintf("load-sub-%d", j)).
				SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).SetKeepAlive(0).
				SetConnectTimeout(10 * time.Second).SetOrderMatters(true)
			c := mqtt.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				fail("sub %d: connect: %v", j, tok.Error())
				return
			}
			clients[j] = c
			tok := c.Subscribe(fmt.Sprintf("load/%d/#", j%groups), 2, handler)
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				fail("sub %d: subscribe: %v", j, tok.Error())
			}
		}(j)
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.Disconnect(0)
			}
		}
	})
	if f := failures(); f != "" {
		t.Fatal(f)
	}

	// Publishers: all connected first, then all publishing at once.
	start := make(chan struct{})
	var published atomic.Int64
	for i := 0; i < publishers; i++ {
		conn, err := net.DialTimeout("tcp", tb.Addr, 10*time.Second)
		if err != nil {
			t.Fatalf("publisher %d: dial: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			lp := &loadPublisher{c: conn}
			lp.dec.Version = codec.Version311
			qos := byte(1 + i%2)
			if err := lp.connect(fmt.Sprintf("load-pub-%d", i)); err != nil {
				fail("publisher %d: %v", i, err)
				return
			}
			<-start
			for s := 0; s < perPub; s++ {
				topic := fmt.Sprintf("load/%d/%d", i%groups, i)
				if err := lp.publish(topic, fmt.Sprintf("%d:%d", i, s), qos, uint16(s+1)); err != nil {
					fail("publisher %d: %v", i, err)
					return
				}
				published.Add(1)
			}
		}(i)
	}
	began := time.Now()
	close(start)
	wg.Wait()
	allIn := make(chan struct{})
	go func() { done.Wait(); close(allIn) }()
	select {
	case <-allIn:
	case <-time.After(60 * time.Second):
		fail("not every subscriber got its %d messages in time", want)
	}
	took := time.Since(began)
	if f := failures(); f != "" {
		t.Fatal(f)
	}
	t.Logf("%d messages published, %d delivered, in %v", published.Load(), subsN*want, took)
	// Nothing more may arrive: give stragglers a moment to show up as duplicates.
	time.Sleep(v3Quiet)
	if f := failures(); f != "" {
		t.Fatal(f)
	}
}

// loadPublisher is a raw-socket publisher for the load test: it reports
// errors instead of failing the test, since it runs on its own goroutine.
type loadPublisher struct {
	c   net.Conn
	dec codec.Decoder
	buf []byte
	pkt codec.Packet
}

func (lp *loadPublisher) send(p *codec.Packet) error {
	_ = lp.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := lp.c.Write(p.Encode(nil, codec.Version311))
	return err
}

// expect reads the next packet, which must be of type want with packet id id.
func (lp *loadPublisher) expect(want codec.PacketType, id uint16) error {
	_ = lp.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if total, err := codec.FrameSize(lp.buf, 0); err == nil && len(lp.buf) >= total {
			_, err := lp.dec.Decode(lp.buf[:total], &lp.pkt)
			lp.buf = lp.buf[total:]
			if err != nil {
				return err
			}
			if lp.pkt.Type != want || lp.pkt.PacketID != id {
				return fmt.Errorf("got %v id %d, want %v id %d", lp.pkt.Type, lp.pkt.PacketID, want, id)
			}
			return nil
		}
		var tmp [512]byte
		n, err := lp.c.Read(tmp[:])
		lp.buf = append(lp.buf, tmp[:n]...)
		if err != nil && n == 0 {
			return fmt.Errorf("waiting for %v: %w", want, err)
		}
	}
}

func (lp *loadPublisher) connect(id string) error {
	if err := lp.send(v3ConnectPacket(codec.Version311, id, true, 0)); err != nil {
		return err
	}
	return lp.expect(codec.CONNACK, 0)
}

// publish sends one message and completes its QoS 1 or 2 flow.
func (lp *loadPublisher) publish(topic, payload string, qos byte, id uint16) error {
	p := &codec.Packet{Type: codec.PUBLISH, Topic: []byte(topic), Payload: []byte(payload), QoS: qos, PacketID: id}
	if err := lp.send(p); err != nil {
		return err
	}
	if qos == 1 {
		return lp.expect(codec.PUBACK, id)
	}
	if err := lp.expect(codec.PUBREC, id); err != nil {
		return err
	}
	if err := lp.send(&codec.Packet{Type: codec.PUBREL, PacketID: id}); err != nil {
		return err
	}
	return lp.expect(codec.PUBCOMP, id)
}
