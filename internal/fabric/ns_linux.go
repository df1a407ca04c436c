package fabric

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs f on an OS thread switched into the network namespace ns, then
// switches the thread back. If switching back fails the thread is
// discarded (the goroutine exits while locked), so no other code ever runs
// in ns by accident. Sockets f opens stay in ns after it returns.
//
// Switching back matters even though the thread could simply be
// discarded: Go cannot end the process's main thread, and a main thread
// left in another namespace makes /proc/<pid>/ns/net name that namespace
// for the whole process.
func Do(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// DoValue is Do returning a value.
func DoValue[T any](ns netns.NsHandle, f func() (T, error)) (T, error) {
	var v T
	err := Do(ns, func() error {
		var err error
		v, err = f()
		return err
	})
	return v, err
}

// Sysctl is one /proc/sys entry, e.g. {"net/ipv4/ip_forward", "1"}.
type Sysctl struct{ Key, Value string }

// WriteSysctlsHere writes sysctls in the calling thread's namespace
// (inside Do).
func WriteSysctlsHere(kvs []Sysctl) error {
	for _, kv := range kvs {
		if err := os.WriteFile(filepath.Join("/proc/sys", kv.Key), []byte(kv.Value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", kv.Key, kv.Value, err)
		}
	}
	return nil
}

// WriteSysctls writes sysctls inside ns (/proc/sys/net is per namespace:
// the writer's namespace decides which one is written).
func WriteSysctls(ns netns.NsHandle, kvs []Sysctl) error {
	if len(kvs) == 0 {
		return nil
	}
	return Do(ns, func() error { return WriteSysctlsHere(kvs) })
}

// ReadSysctl reads one sysctl inside ns.
func ReadSysctl(ns netns.NsHandle, key string) (string, error) {
	return DoValue(ns, func() (string, error) {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		return string(b), err
	})
}
