package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/session"
)

// writePidFile writes the process id, as mosquitto's pid_file.
func writePidFile(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// dropPrivileges is mosquitto's `user`: a broker started as root becomes
// that user and its primary group once its sockets are bound. "mosquitto"
// (the default) falls back to "nobody" when there is no such user; "root"
// stays root; another user that does not exist is an error. The store
// directory, opened as root, is handed to the user so that it can go on
// writing it, as is the cluster's JetStream directory.
func dropPrivileges(cfg *config.Config, logger *log.Logger) error {
	if os.Geteuid() != 0 || cfg.User == "root" {
		return nil
	}
	name := cfg.User
	u, err := user.Lookup(name)
	if err != nil && name == "mosquitto" {
		name = "nobody"
		u, err = user.Lookup(name)
	}
	if err != nil {
		return fmt.Errorf("user %s: %w", cfg.User, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	if cfg.Persistence {
		// The file that stands for the store, and the store's directory
		// beside it (an older midge's store is the directory itself).
		file, _ := filepath.Abs(storeFile(cfg))
		if !mayAccess(filepath.Dir(file), uid, gid, 0o1) {
			return fmt.Errorf("user %s cannot reach the store in %s: make it theirs, or set `user root`", name, filepath.Dir(file))
		}
		for _, p := range []string{file, file + ".d"} {
			if _, err := os.Lstat(p); err != nil {
				continue
			}
			if err := chownTree(p, uid, gid); err != nil {
				return fmt.Errorf("user %s: handing over the store: %w", name, err)
			}
		}
	}
	if dir := clusterStoreOf(cfg); dir != "" {
		// The embedded NATS server has made JetStream's files as root while
		// the node joined; it goes on writing them as the user (files it
		// already has open stay open).
		abs, _ := filepath.Abs(dir)
		if !mayAccess(filepath.Dir(abs), uid, gid, 0o1) {
			return fmt.Errorf("user %s cannot reach the cluster store in %s: make it theirs, or set `user root`", name, filepath.Dir(abs))
		}
		if err := chownTree(abs, uid, gid); err != nil {
			return fmt.Errorf("user %s: handing over the cluster store: %w", name, err)
		}
	}
	if profileDir != "" { // pkg/profile writes the heap profile there at stop
		if err := os.Chown(profileDir, uid, gid); err != nil {
			return fmt.Errorf("user %s: handing over the profile directory: %w", name, err)
		}
	}
	if cfg.PidFile != "" {
		if abs, _ := filepath.Abs(cfg.PidFile); !mayAccess(filepath.Dir(abs), uid, gid, 0o3) {
			logger.Printf("Warning: user %s cannot remove pid_file %s at stop (its directory is not theirs).", name, cfg.PidFile)
		}
	}
	for _, f := range cfg.ReloadedFiles() {
		if abs, _ := filepath.Abs(f); !mayAccess(abs, uid, gid, 0o4) {
			logger.Printf("Warning: user %s cannot read %s: a reload (SIGHUP) will keep the current one.", name, f)
		}
	}
	// Supplementary groups first, then the group, then the user: once the
	// uid changes, nothing else may change.
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("user %s: setgroups: %w", name, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("user %s: setgid: %w", name, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("user %s: setuid: %w", name, err)
	}
	logger.Printf("Running as user %s (uid %d, gid %d).", name, uid, gid)
	return nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// watchMemory is memory_limit: it tells the broker when the heap's live and
// unswept objects pass limit, and makes it Go's soft memory limit so that
// the collector works harder before that happens (not for a limit below the
// runtime's own needs, where the collector would run without pause).
func watchMemory(b *session.Broker, limit int64, stop <-chan struct{}) {
	if limit >= 64<<20 {
		debug.SetMemoryLimit(limit)
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		sampleMemory(b, limit)
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

// mayAccess reports whether uid/gid may reach path (search permission on
// every directory above it) and has the permission bits want (4 read, 2
// write, 1 search/execute) on path itself.
func mayAccess(path string, uid, gid int, want os.FileMode) bool {
	allowed := func(p string, bits os.FileMode) bool {
		fi, err := os.Stat(p)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		m := fi.Mode().Perm()
		switch {
		case int(st.Uid) == uid:
			m >>= 6
		case int(st.Gid) == gid:
			m >>= 3
		}
		return m&bits == bits
	}
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if !allowed(d, 1) {
			return false
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	return allowed(path, want)
}

// sampleMemory tells the broker whether the heap is over limit now.
func sampleMemory(b *session.Broker, limit int64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	b.SetOverMemory(int64(sample[0].Value.Uint64()) > limit)
}
