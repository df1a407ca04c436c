package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Options configures a Server.
type Options struct {
	// TTL of instance records and of synthesised SOA/NS (also the negative
	// caching TTL). Default 60.
	TTL uint32
	// NetworkOf maps a client's source address to its network ("" = unknown).
	// nil means every client sees everything. See the package doc.
	NetworkOf func(netip.Addr) string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Server is an authoritative DNS server for a Table. It implements dns.Handler.
type Server struct {
	ttl       uint32
	networkOf func(netip.Addr) string
	log       *slog.Logger

	table   atomic.Pointer[Table]
	started atomic.Bool
	ready   chan struct{}
	udpAddr atomic.Pointer[net.UDPAddr]
	tcpAddr atomic.Pointer[net.TCPAddr]
}

const (
	// ednsSize is the EDNS(0) payload size we advertise and the most we send
	// over UDP (DNS flag day 2020).
	ednsSize = 1232
	// readUDPSize is the largest query datagram read.
	readUDPSize = 4096
)

// New returns a Server. It answers SERVFAIL until the first Update.
func New(opts Options) *Server {
	if opts.TTL == 0 {
		opts.TTL = 60
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{ttl: opts.TTL, networkOf: opts.NetworkOf, log: opts.Logger, ready: make(chan struct{})}
}

// Update atomically replaces the served table; the next query sees t.
func (s *Server) Update(t *Table) { s.table.Store(t) }

// Ready is closed once ListenAndServe has bound its UDP and TCP sockets.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound UDP address (TCP listens on the same IP and port),
// or nil before Ready.
func (s *Server) Addr() net.Addr {
	if a := s.udpAddr.Load(); a != nil {
		return a
	}
	return nil
}

// TCPAddr returns the bound TCP address, or nil before Ready.
func (s *Server) TCPAddr() net.Addr {
	if a := s.tcpAddr.Load(); a != nil {
		return a
	}
	return nil
}

// ListenAndServe serves UDP and TCP on addr (the same port for both; with
// port 0 one free port is picked for both). It returns nil once ctx is done
// and both servers have stopped, or an error if binding or serving fails.
// It may be called once per Server.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("dnsserver: ListenAndServe called more than once")
	}
	pc, ln, err := ListenBoth(addr)
	if err != nil {
		return err
	}
	var startWG sync.WaitGroup
	startWG.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: s, UDPSize: readUDPSize, NotifyStartedFunc: startWG.Done}
	tcp := &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: startWG.Done,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}

	errc := make(chan error, 2)
	var done sync.WaitGroup
	done.Add(2)
	for _, srv := range []*dns.Server{udp, tcp} {
		go func() {
			defer done.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errc <- err
			}
		}()
	}
	started := make(chan struct{})
	go func() { startWG.Wait(); close(started) }()

	var serveErr error
	ok := false
	select {
	case <-started:
		ok = true
		s.udpAddr.Store(pc.LocalAddr().(*net.UDPAddr))
		s.tcpAddr.Store(ln.Addr().(*net.TCPAddr))
		close(s.ready)
		s.log.Info("dns server listening", "udp", pc.LocalAddr().String(), "tcp", ln.Addr().String())
		select {
		case <-ctx.Done():
		case serveErr = <-errc:
		}
	case serveErr = <-errc:
	}

	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok {
		for _, srv := range []*dns.Server{udp, tcp} {
			_ = srv.ShutdownContext(shCtx)
		}
	}
	// Closing the sockets also stops a server that failed half-way.
	pc.Close()
	ln.Close()
	done.Wait()
	if serveErr != nil {
		return fmt.Errorf("dnsserver: %w", serveErr)
	}
	return nil
}

// ListenBoth binds UDP and TCP on the same port (with port 0, a port
// free for both).
func ListenBoth(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsserver: address %q: %w", addr, err)
	}
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsserver: listen udp %s: %w", addr, err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" && port != "" {
			break // a fixed port: no point retrying
		}
	}
	return nil, nil, fmt.Errorf("dnsserver: listen tcp %s: %w", addr, lastErr)
}

// ServeDNS answers one query. It never panics: a panic in resolution is
// logged and answered with SERVFAIL.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if r == nil || r.Response {
		return // never answer responses (reflection loops)
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("dns: panic while answering", "panic", p)
			f := new(dns.Msg)
			f.SetRcode(r, dns.RcodeServerFailure)
			_ = w.WriteMsg(f)
		}
	}()
	m := s.reply(w, r)
	if err := w.WriteMsg(m); err != nil && s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("dns: write failed", "err", err, "client", w.RemoteAddr())
	}
}

func (s *Server) reply(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	m := &dns.Msg{}
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	if len(r.Question) > 0 {
		m.Question = r.Question[:1:1] // echoed as sent (0x20)
	}

	var opt *dns.OPT
	nopt := 0
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			opt = o
			nopt++
		}
	}
	if nopt > 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	var ropt *dns.OPT
	if opt != nil {
		ropt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: ednsSize}}
		if opt.Do() {
			ropt.SetDo()
		}
		m.Extra = []dns.RR{ropt}
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	}
	switch {
	case r.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
		return m
	case len(r.Question) != 1:
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := &r.Question[0]
	if q.Qclass != dns.ClassINET || q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused
		return m
	}
	t := s.table.Load()
	if t == nil {
		m.Rcode = dns.RcodeServerFailure
		return m
	}

	remote := w.RemoteAddr()
	var network string
	filter := s.networkOf != nil
	if filter {
		network = s.networkOf(addrOf(remote))
	}
	name := lowerASCII(q.Name)
	if name == "" {
		name = "."
	}
	t.resolve(m, name, q.Qtype, network, filter, s.ttl)

	size := dns.MinMsgSize
	if _, isTCP := remote.(*net.TCPAddr); isTCP {
		size = dns.MaxMsgSize
	} else if opt != nil {
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), ednsSize)
	}
	m.Truncate(size)
	return m
}

func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
