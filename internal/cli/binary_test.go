package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
)

// TestBinary builds the real aliasnet binary, runs `aliasnet serve` and
// drives CLI verbs as separate processes: exit codes, stdout and stderr
// are what a shell script sees.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "aliasnet")
	build := exec.Command(gobin, "build", "-o", bin, "./cmd/aliasnet")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	// The server logs its bound address: api=http://127.0.0.1:PORT/compute/v1/
	addrc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`api=(http://[^/\s]+)/compute/v1/`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		exited <- srv.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = srv.Process.Kill()
			<-exited
		}
	})
	var url string
	select {
	case url = <-addrc:
	case err := <-exited:
		t.Fatalf("server exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not report its address")
	}
	if resp, err := http.Get(url + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}

	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "ALIASNET_SERVER="+url, "ALIASNET_PROJECT=binproj")
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("aliasnet %v: %v", args, err)
		}
		return out.String(), errb.String(), code
	}
	ok := func(args ...string) string {
		t.Helper()
		out, errs, code := run(args...)
		if code != 0 {
			t.Fatalf("aliasnet %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}

	ok("networks", "create", "vpc", "--subnet-mode=custom")
	ok("subnets", "create", "subnet-a", "--network", "vpc", "--region", "us-central1",
		"--range", "10.128.0.0/16", "--secondary-range", "container-range=172.16.0.0/20")
	out, errs, code := run("instances", "create", "vm1", "--zone", "us-central1-a",
		"--network-interface", "subnet=subnet-a,aliases=container-range:172.16.0.0/24")
	if code != 0 || !strings.Contains(out, "container-range:172.16.0.0/24") ||
		errs != "Created ["+url+"/compute/v1/projects/binproj/zones/us-central1-a/instances/vm1].\n" {
		t.Fatalf("instances create: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	out, errs, code = run("instances", "create", "vm2", "--zone", "us-central1-a",
		"--network-interface", "subnet=subnet-a,aliases=container-range:172.16.0.0/24")
	if code != 1 || out != "" || errs != "ERROR: IP '172.16.0.0/24' is already being used by another resource.\n" {
		t.Fatalf("conflict: exit %d\nstdout:\n%s\nstderr:\n%q", code, out, errs)
	}
	_, errs, code = run("instances", "create", "vm2", "--zone", "us-central1-a", "--network-interface", "subnett=subnet-a")
	if code != 1 || !strings.Contains(errs, `ERROR: --network-interface: unknown key "subnett"`) {
		t.Fatalf("bad flag: exit %d, stderr %q", code, errs)
	}
	ok("instances", "network-interfaces", "update", "vm1", "--zone", "us-central1-a", "--aliases", "")
	out = ok("instances", "list", "--format", "json")
	var ins []*compute.Instance
	if err := json.Unmarshal([]byte(out), &ins); err != nil || len(ins) != 1 || len(ins[0].NetworkInterfaces[0].AliasIpRanges) != 0 {
		t.Fatalf("instances list json: %v\n%s", err, out)
	}
	ok("instances", "delete", "vm1", "--zone", "us-central1-a")
	ok("subnets", "delete", "subnet-a", "--region", "us-central1")
	ok("networks", "delete", "vpc")

	// SIGTERM: graceful shutdown, exit 0.
	stopped = true
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		_ = srv.Process.Kill()
		t.Fatal("serve did not stop on SIGTERM")
	}
}
