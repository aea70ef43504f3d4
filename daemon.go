package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
)

// daemonEnv marks the background copy that `midge -d` starts.
const daemonEnv = "MIDGE_DAEMONIZED"

// daemonize is `midge -d`: Go cannot fork a running runtime, so it starts
// itself again in a new session with stdin and stdout on /dev/null and
// waits until that copy is ready. The copy's stderr is a pipe to this
// process until then, so that a bad configuration or a port in use is
// still reported here, with exit status 1, as in the foreground; once its
// listeners are open it sends a NUL byte and lets go (see readyNotifier).
func daemonize(args []string, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "Error: -d: %v\n", err)
		return 1
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "Error: -d: %v\n", err)
		return 1
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "Error: -d: %v\n", err)
		return 1
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "Error: -d: %v\n", err)
		return 1
	}
	w.Close()
	said, _ := io.ReadAll(r) // until the copy lets go of the pipe, ready or gone
	r.Close()
	if n := len(said); n > 0 && said[n-1] == 0 {
		stderr.Write(said[:n-1])
		_ = cmd.Process.Release()
		return 0
	}
	stderr.Write(said)
	_ = cmd.Wait()
	if len(bytes.TrimSpace(said)) == 0 {
		fmt.Fprintln(stderr, "Error: -d: the broker stopped before it was ready")
	}
	return 1
}

// readyNotifier tells whoever waits for the broker that its listeners are
// open: systemd (Type=notify: READY=1 on $NOTIFY_SOCKET) and the `midge -d`
// that started this process. Each call after the first says nothing.
type readyNotifier struct{ done bool }

func (n *readyNotifier) ready() error {
	if n.done {
		return nil
	}
	n.done = true
	if os.Getenv(daemonEnv) != "" {
		os.Unsetenv(daemonEnv)
		if err := detachStderr(); err != nil {
			return err
		}
	}
	return sdNotify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid()))
}

// detachStderr sends the NUL that means ready down the pipe to `midge -d`
// and puts /dev/null in its place, so that the pipe closes.
func detachStderr() error {
	if _, err := os.Stderr.Write([]byte{0}); err != nil {
		return fmt.Errorf("-d: %w", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("-d: %w", err)
	}
	defer null.Close()
	return syscall.Dup3(int(null.Fd()), 2, 0) // dup3: every Linux architecture has it, not dup2
}

// sdNotify sends state to systemd's notification socket, a unix datagram
// socket named by $NOTIFY_SOCKET ("@name": in the abstract namespace, which
// Go's net package maps the same way). Without it, there is no one to tell.
func sdNotify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
