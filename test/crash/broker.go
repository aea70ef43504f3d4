package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// broker is the midge process under test: started on a config with
// persistence on and every acknowledgement waiting for its sync, killed
// with SIGKILL, started again on the same store.
type broker struct {
	bin, conf, addr string
	log             *os.File // the broker's output, all runs appended

	mu     sync.Mutex
	cmd    *exec.Cmd
	killed bool
}

// newBroker writes the config in dir and picks a loopback port.
func newBroker(bin, dir string) (*broker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "midge.conf")
	// No queue limits: a message the broker acknowledged must never be
	// dropped for an offline subscriber's full queue, which is a policy,
	// not what this harness looks for. user root: started as root, midge
	// would otherwise become the mosquitto user, who cannot reach a
	// temporary directory only root may enter.
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"+
		"persistence_location %s\npersistence_sync always\nmax_queued_messages 0\nmax_queued_bytes 0\nuser root\n", port, dir)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		return nil, err
	}
	return &broker{bin: bin, conf: conf, addr: fmt.Sprintf("127.0.0.1:%d", port), log: log}, nil
}

// start runs the broker and waits until it accepts connections.
func (b *broker) start() error {
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		return err
	}
	b.mu.Lock()
	b.cmd, b.killed = cmd, false
	b.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			b.kill()
			b.wait()
			return fmt.Errorf("broker did not listen on %s: %v (see %s)", b.addr, err, b.log.Name())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill sends SIGKILL, once per run. Any goroutine.
func (b *broker) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil && !b.killed {
		b.killed = true
		_ = b.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// wasKilled reports whether the current run was killed.
func (b *broker) wasKilled() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.killed
}

// wait waits for the process to end.
func (b *broker) wait() {
	b.mu.Lock()
	cmd := b.cmd
	b.mu.Unlock()
	if cmd != nil {
		_ = cmd.Wait()
	}
}

// stop ends the broker cleanly (SIGTERM), or kills it after 10 s.
func (b *broker) stop() {
	b.mu.Lock()
	cmd := b.cmd
	b.mu.Unlock()
	if cmd == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.kill()
		<-done
	}
	b.log.Close()
}
