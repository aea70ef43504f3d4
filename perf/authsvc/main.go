// Command authsvc is an HTTP auth service in mosquitto-go-auth's contract
// for benchmarks (scripts/auth-bench.sh): every user with password "pw" may
// connect, nobody is a superuser, every topic is allowed. It counts the
// requests it answers and prints the count on SIGINT/SIGTERM.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen `address`")
	flag.Parse()
	var requests atomic.Int64
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		var f struct{ Password string }
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &f)
		switch {
		case r.URL.Path == "/superuser":
			w.WriteHeader(http.StatusForbidden)
		case r.URL.Path == "/user" && f.Password != "pw":
			w.WriteHeader(http.StatusForbidden)
		}
	})}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintf(os.Stderr, "authsvc: %d requests\n", requests.Load())
		srv.Close()
	}()
	_ = srv.Serve(ln)
}
