// Command logger is mosquitto's database logger example, on midge's
// client: it subscribes to a filter (every topic by default) and stores
// each message it sees in an SQLite database, through modernc.org/sqlite,
// a pure-Go driver (no cgo, so cross builds for boards keep working).
//
//	go run ./examples/logger -addr 127.0.0.1:1883 -db messages.db
//	go run ./examples/logger -db messages.db -query sensors/#   # read them back
package main

import (
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	_ "modernc.org/sqlite"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

const schema = `CREATE TABLE IF NOT EXISTS messages (
	id       INTEGER PRIMARY KEY,
	received INTEGER NOT NULL, -- unix milliseconds
	topic    TEXT NOT NULL,
	payload  BLOB NOT NULL,
	qos      INTEGER NOT NULL,
	retain   INTEGER NOT NULL
)`

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "broker `host:port`")
	dbPath := flag.String("db", "messages.db", "SQLite database file")
	filter := flag.String("t", "#", "topic filter to log")
	count := flag.Int("count", 0, "stop after this many messages (0: run until interrupted)")
	query := flag.String("query", "", "print the stored messages whose topic matches this `filter`, and exit")
	flag.Parse()

	db, err := sql.Open("sqlite", *dbPath)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(schema); err != nil {
		log.Fatal(err)
	}
	if *query != "" {
		if err := printMessages(db, *query); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := record(db, *addr, *filter, *count); err != nil {
		log.Fatal(err)
	}
}

type row struct {
	at             int64
	topic, payload []byte
	qos            byte
	retain         bool
}

// record logs what filter matches until interrupted or count messages.
func record(db *sql.DB, addr, filter string, count int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := client.New(client.Options{Addr: addr, ClientID: "sqlite-logger", CleanStart: true, KeepAlive: 60})
	rows := make(chan row, 256)
	c.OnMessage = func(m *client.Message) { // copies: the slices are borrowed
		rows <- row{time.Now().UnixMilli(), bytes.Clone(m.Topic), bytes.Clone(m.Payload), m.QoS, m.Retain}
	}
	if err := c.Connect(ctx); err != nil {
		return err
	}
	defer c.Disconnect(codec.Success, nil)
	if _, err := c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte(filter), QoS: 2}); err != nil {
		return err
	}
	insert, err := db.Prepare(`INSERT INTO messages (received, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer insert.Close()
	log.Printf("logging %s", filter)
	for n := 0; count == 0 || n < count; n++ {
		var r row
		select {
		case <-ctx.Done():
			return nil
		case r = <-rows:
		}
		if _, err := insert.Exec(r.at, string(r.topic), r.payload, r.qos, r.retain); err != nil {
			return err
		}
	}
	return nil
}

// printMessages prints the stored messages whose topic matches filter
// (MQTT wildcards), oldest first: "topic payload".
func printMessages(db *sql.DB, filter string) error {
	rs, err := db.Query(`SELECT topic, payload FROM messages ORDER BY id`)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var topic string
		var payload []byte
		if err := rs.Scan(&topic, &payload); err != nil {
			return err
		}
		if matches(filter, topic) {
			fmt.Printf("%s %s\n", topic, payload)
		}
	}
	return rs.Err()
}

// matches reports whether topic matches an MQTT filter with + and #.
func matches(filter, topic string) bool {
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, level := range f {
		switch {
		case level == "#":
			return true
		case i >= len(t):
			return false
		case level != "+" && level != t[i]:
			return false
		}
	}
	return len(f) == len(t)
}
