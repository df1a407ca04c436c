package fabric

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// rtBatch sends route changes to the kernel many per write: every message
// but the last of a write goes without NLM_F_ACK (the kernel then reports
// only failures), the last asks for an ack so that the writer knows the
// kernel has processed the whole write. 10,000 routes cost a few dozen
// system calls instead of 20,000 (vishvananda/netlink's RouteReplace waits
// for an ack per route).
type rtBatch struct {
	fd   int
	seq  uint32
	buf  []byte
	ops  map[uint32]string // seq -> description, for errors
	errs []error
}

const rtBatchBytes = 64 << 10

func openRtBatch(ns netns.NsHandle) (*rtBatch, error) {
	b, err := DoValue(ns, openRtBatchHere)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	return b, nil
}

// openRtBatchHere opens the socket in the calling thread's namespace.
func openRtBatchHere() (*rtBatch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Room for the error reports of a whole write.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 1<<20)
	// Extended acks carry the kernel's explanation.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	return &rtBatch{fd: fd, seq: 1, ops: map[uint32]string{}}, nil
}

func (b *rtBatch) close() { unix.Close(b.fd) }

func nlaAppend(buf []byte, typ uint16, data []byte) []byte {
	l := 4 + len(data)
	buf = binary.NativeEndian.AppendUint16(buf, uint16(l))
	buf = binary.NativeEndian.AppendUint16(buf, typ)
	buf = append(buf, data...)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	return buf
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// route queues a replace (del false) or delete of r with protocol proto;
// ifindex is the index of r.Dev (0 for blackholes).
func (b *rtBatch) route(r KRoute, ifindex int, proto uint8, del bool) error {
	msg := make([]byte, 16, 96)
	typ := uint16(unix.RTM_NEWROUTE)
	flags := uint16(unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_REPLACE)
	if del {
		typ, flags = unix.RTM_DELROUTE, unix.NLM_F_REQUEST
	}
	// struct rtmsg
	rtm := [12]byte{}
	rtm[0] = unix.AF_INET
	rtm[1] = byte(r.Dst.Bits())
	rtm[4] = unix.RT_TABLE_UNSPEC
	rtm[5] = proto
	if del {
		rtm[6] = unix.RT_SCOPE_NOWHERE
	} else {
		switch r.Type {
		case RouteLocal:
			rtm[6], rtm[7] = unix.RT_SCOPE_HOST, unix.RTN_LOCAL
		case RouteBlackhole:
			rtm[6], rtm[7] = unix.RT_SCOPE_UNIVERSE, unix.RTN_BLACKHOLE
		case RouteDev:
			rtm[6], rtm[7] = unix.RT_SCOPE_LINK, unix.RTN_UNICAST
		case RouteVia:
			rtm[6], rtm[7] = unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST
			binary.NativeEndian.PutUint32(rtm[8:], unix.RTNH_F_ONLINK)
		default:
			return fmt.Errorf("route %s: unknown type %q", r.Dst, r.Type)
		}
	}
	msg = append(msg, rtm[:]...)
	msg = nlaAppend(msg, unix.RTA_TABLE, u32(uint32(r.Table)))
	a := r.Dst.Masked().Addr().As4()
	msg = nlaAppend(msg, unix.RTA_DST, a[:])
	if !del && r.Type != RouteBlackhole {
		if ifindex <= 0 {
			return fmt.Errorf("route %s: link %q not found", r.Dst, r.Dev)
		}
		msg = nlaAppend(msg, unix.RTA_OIF, u32(uint32(ifindex)))
		if r.Type == RouteVia {
			g := r.Via.As4()
			msg = nlaAppend(msg, unix.RTA_GATEWAY, g[:])
		}
	}
	if len(b.buf)+len(msg) > rtBatchBytes {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.seq++
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], b.seq)
	op := "replace"
	if del {
		op = "delete"
	}
	b.ops[b.seq] = fmt.Sprintf("%s route table %d %s %s %s", op, r.Table, r.Dst, r.Type, r.Dev)
	b.buf = append(b.buf, msg...)
	return nil
}

// flush writes the queued messages, the last one with NLM_F_ACK, and
// collects the kernel's error reports until that ack.
func (b *rtBatch) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	// Find the last message and ask for its ack.
	off, last := 0, 0
	for off < len(b.buf) {
		last = off
		off += int(binary.NativeEndian.Uint32(b.buf[off:]))
	}
	lastSeq := binary.NativeEndian.Uint32(b.buf[last+8:])
	fl := binary.NativeEndian.Uint16(b.buf[last+6:])
	binary.NativeEndian.PutUint16(b.buf[last+6:], fl|unix.NLM_F_ACK)
	if err := unix.Sendto(b.fd, b.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		b.buf = b.buf[:0]
		return fmt.Errorf("rtnetlink send: %w", err)
	}
	b.buf = b.buf[:0]
	rb := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(b.fd, rb, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("rtnetlink receive: %w", err)
		}
		done := false
		for p := rb[:n]; len(p) >= 16; {
			l := int(binary.NativeEndian.Uint32(p))
			if l < 16 || l > len(p) {
				break
			}
			typ := binary.NativeEndian.Uint16(p[4:])
			seq := binary.NativeEndian.Uint32(p[8:])
			if typ == unix.NLMSG_ERROR && l >= 20 {
				code := int32(binary.NativeEndian.Uint32(p[16:]))
				if code != 0 {
					b.errs = append(b.errs, fmt.Errorf("%s: %w", b.ops[seq], syscall.Errno(-code)))
				}
				if seq == lastSeq {
					done = true
				}
			}
			step := (l + 3) &^ 3
			if step > len(p) {
				break
			}
			p = p[step:]
		}
		if done {
			break
		}
	}
	clear(b.ops)
	return nil
}

// RouteWriter writes many routes to a namespace in few system calls.
type RouteWriter struct {
	b       *rtBatch
	changed int
}

// NewRouteWriter opens an rtnetlink socket in ns.
func NewRouteWriter(ns netns.NsHandle) (*RouteWriter, error) {
	b, err := openRtBatch(ns)
	if err != nil {
		return nil, err
	}
	return &RouteWriter{b: b}, nil
}

// NewRouteWriterHere opens the socket in the namespace of the calling
// thread (inside Do, together with other setup).
func NewRouteWriterHere() (*RouteWriter, error) {
	b, err := openRtBatchHere()
	if err != nil {
		return nil, err
	}
	return &RouteWriter{b: b}, nil
}

// Replace queues "ip route replace" of r (protocol proto); ifindex is the
// index of r.Dev.
func (w *RouteWriter) Replace(r KRoute, ifindex int, proto uint8) error {
	w.changed++
	return w.b.route(r, ifindex, proto, false)
}

// Delete queues the deletion of the route of r.Table and r.Dst with
// protocol proto.
func (w *RouteWriter) Delete(r KRoute, proto uint8) error {
	w.changed++
	return w.b.route(r, 0, proto, true)
}

// Flush sends what is queued and returns the kernel's refusals.
func (w *RouteWriter) Flush() error {
	if err := w.b.flush(); err != nil {
		return err
	}
	return w.b.err()
}

// Close closes the socket.
func (w *RouteWriter) Close() { w.b.close() }

// err returns the failures reported since the last call.
func (b *rtBatch) err() error {
	err := errors.Join(b.errs...)
	b.errs = nil
	return err
}
