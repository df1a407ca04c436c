// Package e2e drives the real aliasnet binary with real clients: the
// official Go SDKs and gcloud. Every test starts its own server on a free
// loopback port with its own data directory.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aliasnet-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "aliasnet")
	build := exec.Command("go", "build", "-o", binary, "../cmd/aliasnet")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building aliasnet:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Server is a running aliasnet binary.
type Server struct {
	t       testing.TB
	cmd     *exec.Cmd
	Addr    string
	DataDir string
	Log     *syncLog
}

// syncLog collects the server's stderr; tests read it while it grows.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) WriteString(s string) {
	l.mu.Lock()
	l.b.WriteString(s)
	l.mu.Unlock()
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartServer runs `aliasnet serve` and waits until it answers.
func StartServer(t testing.TB, dataDir string, extra ...string) *Server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &Server{t: t, Addr: freePort(t), DataDir: dataDir, Log: &syncLog{}}
	args := append([]string{"serve", "--listen", s.Addr, "--data-dir", dataDir}, extra...)
	s.cmd = exec.Command(binary, args...)
	stderr, _ := s.cmd.StderrPipe()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.Log.WriteString(sc.Text() + "\n")
		}
	}()
	t.Cleanup(s.Kill)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + s.Addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v\n%s", err, s.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL: nothing is flushed on the way out.
func (s *Server) Kill() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
		s.cmd.Wait()
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (s *Server) Stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// URL is the server's base URL.
func (s *Server) URL() string { return "http://" + s.Addr }

// Compute returns the official GCE client pointed at the server.
func (s *Server) Compute(t testing.TB) *compute.Service {
	t.Helper()
	svc, err := compute.NewService(context.Background(),
		option.WithEndpoint(s.URL()+"/compute/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return svc
}
