package storetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartRedis starts a throwaway redis-server on a free loopback port, with
// persistence off and its files in a temporary directory, and returns its
// URL (redis://127.0.0.1:<port>/0). The server is killed when the test ends.
//
// Tests of the Redis store run against the real server, never a fake: the
// Lua scripts, hash tags and TTLs are what is being tested. A missing
// redis-server fails the test rather than skipping it, so CI cannot go green
// without exercising Redis.
func StartRedis(t testing.TB) string {
	t.Helper()
	return "redis://" + startServer(t) + "/0"
}

// startServer starts one redis-server with extra arguments and returns its
// host:port.
func startServer(t testing.TB, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (%v): install it, e.g. `apt-get install redis-server`", err)
	}
	dir := t.TempDir()
	// The port is picked by binding :0 and releasing it, so another process
	// can take it before redis-server binds; then the server exits and a
	// new port is tried.
	var errs []error
	for attempt := range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("picking a port for redis-server: %v", err)
		}
		addr, err := startRedis(t, bin, filepath.Join(dir, strconv.Itoa(attempt)), port, extra)
		if err == nil {
			return addr
		}
		errs = append(errs, err)
	}
	t.Fatalf("starting redis-server: %v", errors.Join(errs...))
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis runs one server and waits until it answers PING, or reports
// why it did not (with the tail of its log).
func startRedis(t testing.TB, bin, dir string, port int, extra []string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	logFile := filepath.Join(dir, "redis.log")
	args := append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", logFile,
		"--daemonize", "no",
	}, extra...)
	// A config file (Sentinel's, which it rewrites) must come first.
	if len(extra) > 0 && !strings.HasPrefix(extra[0], "--") {
		args = append(append([]string{extra[0]}, args[:len(args)-len(extra)]...), extra[1:]...)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("running %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return "", fmt.Errorf("redis-server on port %d exited (%v): %s", port, err, tail(logFile))
		default:
		}
		switch pid, err := serverPID(addr); {
		case err == nil && pid == cmd.Process.Pid:
			t.Cleanup(stop)
			return addr, nil
		case err == nil:
			// Another redis-server (a parallel test's) won the port; ours
			// is about to exit with a bind error.
			stop()
			return "", fmt.Errorf("port %d is taken by redis-server pid %d", port, pid)
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("redis-server on port %d did not answer PING within 10s: %s", port, tail(logFile))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serverPID asks the Redis at addr for its process id, speaking just enough
// RESP to tell our server from any other process holding the port. It
// errors while the server is still starting.
func serverPID(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil {
		return 0, fmt.Errorf("INFO answered %q", strings.TrimSpace(head))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return "(empty log)"
	}
	return s
}
