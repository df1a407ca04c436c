package cni

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// httpGet sends one HTTP/1.1 GET (Connection: close) to a plain-HTTP
// metadata server and returns the status and body.
//
// The plugin does not use net/http on purpose. It runs once per pod, so
// everything it links is initialised at every ADD: net/http brings
// crypto/tls, x509 and the rest of the HTTP stack, and in the aliasnet
// binary (where the plugin runs from package initialisation, see package
// early) a dependency on net/http would also put the plugin behind most of
// the server's dependencies in Go's initialisation order.
func httpGet(ctx context.Context, rawURL string, hdr map[string]string) (int, []byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, nil, err
	}
	if u.Scheme != "http" {
		return 0, nil, fmt.Errorf("%s: only http:// metadata URLs are supported", rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: aliasnet-cni\r\nConnection: close\r\n", u.RequestURI(), u.Host)
	for k, v := range hdr {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return 0, nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		return 0, nil, err
	}
	return parseResponse(raw)
}

// parseResponse reads a whole HTTP/1.x response: status line, headers, and
// a body delimited by Content-Length, chunked encoding or the end of the
// connection.
func parseResponse(raw []byte) (int, []byte, error) {
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		return 0, nil, fmt.Errorf("truncated HTTP response (%d bytes)", len(raw))
	}
	lines := strings.Split(string(head), "\r\n")
	proto, rest, _ := strings.Cut(lines[0], " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil {
		return 0, nil, fmt.Errorf("bad HTTP status line %q", lines[0])
	}
	chunked, length := false, -1
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "transfer-encoding":
			chunked = strings.EqualFold(v, "chunked")
		case "content-length":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				length = n
			}
		}
	}
	switch {
	case chunked:
		var out []byte
		for {
			line, rest, ok := bytes.Cut(body, []byte("\r\n"))
			if !ok {
				return 0, nil, fmt.Errorf("truncated chunked HTTP body")
			}
			sz, _, _ := strings.Cut(string(line), ";")
			n, err := strconv.ParseUint(strings.TrimSpace(sz), 16, 31)
			if err != nil || uint64(len(rest)) < n {
				return 0, nil, fmt.Errorf("bad chunked HTTP body")
			}
			if n == 0 {
				return status, out, nil
			}
			out = append(out, rest[:n]...)
			body = bytes.TrimPrefix(rest[n:], []byte("\r\n"))
		}
	case length >= 0:
		if len(body) < length {
			return 0, nil, fmt.Errorf("truncated HTTP body (%d of %d bytes)", len(body), length)
		}
		return status, body[:length], nil
	}
	return status, body, nil
}
