package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Probes are tiny test servers and clients (`aliasnet lab probe`, hidden)
// so that a lab can be exercised with real packets without nc or ping:
// a listener greets every TCP connection and answers every UDP datagram
// with its name; a connect reports whether the destination answered.

// ProbeListen serves TCP and UDP on the given addresses ("IP:PORT") until
// ctx ends. It writes "ready\n" to ready once listening.
func ProbeListen(ctx context.Context, name string, tcp, udp []string, ready io.Writer) error {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	greeting := []byte(name + "\n")
	for _, a := range tcp {
		ln, err := net.Listen("tcp4", a)
		if err != nil {
			return err
		}
		closers = append(closers, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write(greeting)
				c.Close()
			}
		}()
	}
	for _, a := range udp {
		pc, err := net.ListenPacket("udp4", a)
		if err != nil {
			return err
		}
		closers = append(closers, pc)
		p := ipv4.NewPacketConn(pc)
		// Answer from the address the datagram was sent to (an alias),
		// not from the primary IP routing would pick.
		if err := p.SetControlMessage(ipv4.FlagDst, true); err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				_, cm, from, err := p.ReadFrom(buf)
				if err != nil {
					return
				}
				var out *ipv4.ControlMessage
				if cm != nil && cm.Dst != nil {
					out = &ipv4.ControlMessage{Src: cm.Dst}
				}
				p.WriteTo(greeting, out, from)
			}
		}()
	}
	if ready != nil {
		fmt.Fprintln(ready, "ready")
	}
	<-ctx.Done()
	return nil
}

// ProbeResult is the outcome of one probe.
type ProbeResult struct {
	// Reached: the destination answered (greeting, echo reply); Refused:
	// it answered with a TCP reset or ICMP port unreachable (the packet
	// was delivered, nothing listens).
	Reached bool   `json:"reached"`
	Refused bool   `json:"refused,omitempty"`
	Reply   string `json:"reply,omitempty"`
	Err     string `json:"error,omitempty"`
}

// Delivered reports whether the packet reached its destination.
func (r ProbeResult) Delivered() bool { return r.Reached || r.Refused }

// transparent lets a socket use a source address the host does not own
// (IP_FREEBIND to bind it, IP_TRANSPARENT to send from it): the
// anti-spoofing probes.
func transparent(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TRANSPARENT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

var icmpID atomic.Uint32

// Probe sends one probe: tcp (connect, read the greeting), udp (datagram,
// read the answer) or icmp (echo). src, when valid, is the source address
// (any address: the socket is transparent).
func Probe(ctx context.Context, proto string, src, dst netip.Addr, port int, timeout time.Duration) ProbeResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	switch proto {
	case "tcp", "udp":
		d := net.Dialer{Control: nil}
		if src.IsValid() {
			d.Control = transparent
			if proto == "tcp" {
				d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
			} else {
				d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
			}
		}
		c, err := d.DialContext(ctx, proto+"4", net.JoinHostPort(dst.String(), strconv.Itoa(port)))
		if err != nil {
			return failure(err)
		}
		defer c.Close()
		c.SetDeadline(deadline)
		if proto == "udp" {
			if _, err := c.Write([]byte("probe\n")); err != nil {
				return failure(err)
			}
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			if proto == "tcp" && errors.Is(err, io.EOF) {
				// Connected: delivered, though nobody greeted.
				return ProbeResult{Reached: true}
			}
			return failure(err)
		}
		return ProbeResult{Reached: true, Reply: strings.TrimSpace(line)}
	case "icmp":
		lc := net.ListenConfig{}
		laddr := "0.0.0.0"
		if src.IsValid() {
			lc.Control = transparent
			laddr = src.String()
		}
		pc, err := lc.ListenPacket(ctx, "ip4:icmp", laddr)
		if err != nil {
			return failure(err)
		}
		defer pc.Close()
		id := int((uint32(os.Getpid())<<7 + icmpID.Add(1)) & 0xffff)
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("aliasnet-probe")}}
		b, _ := msg.Marshal(nil)
		if _, err := pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return failure(err)
		}
		pc.SetReadDeadline(deadline)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return failure(err)
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && m.Type == ipv4.ICMPTypeEchoReply && e.ID == id && from.String() == dst.String() {
				return ProbeResult{Reached: true}
			}
		}
	}
	return ProbeResult{Err: "unknown protocol " + proto}
}

func failure(err error) ProbeResult {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return ProbeResult{Refused: true, Err: err.Error()}
	}
	return ProbeResult{Err: err.Error()}
}

// ProbeSend sends n UDP datagrams from src (any address) to dst:port and
// does not wait for answers (the anti-spoofing test).
func ProbeSend(src, dst netip.Addr, port, n int) error {
	d := net.Dialer{Control: transparent, LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
	c, err := d.Dial("udp4", net.JoinHostPort(dst.String(), strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer c.Close()
	for range n {
		if _, err := c.Write([]byte("spoof\n")); err != nil {
			return err
		}
	}
	return nil
}
