//go:build unix

package ipam

import (
	"syscall"
	"time"
)

// cpuNow is the CPU time (user+system, all threads) used by this process.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
