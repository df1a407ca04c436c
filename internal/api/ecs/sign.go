package ecs

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aliasnet/aliasnet/internal/model"
)

// Alibaba Cloud RPC signature version 1 (what the official SDKs send):
//
//	canonical  = sorted "percentEncode(k)=percentEncode(v)" joined by "&",
//	             over every query and form parameter but Signature
//	toSign     = METHOD + "&" + percentEncode("/") + "&" + percentEncode(canonical)
//	Signature  = base64(HMAC-SHA1(secret + "&", toSign))
//
// percentEncode is RFC 3986: every byte but A-Z a-z 0-9 - _ . ~ becomes
// %XX (upper-case hex), so a space is %20, "*" is %2A and "~" stays.

// Limits on what a request may carry.
const (
	maxBody   = 1 << 20
	maxParams = 2000
	// MaxClockSkew is how far a request's Timestamp may be from the
	// server's clock; nonces are remembered that long.
	MaxClockSkew = 15 * time.Minute
	// maxNonces bounds the replay cache; past it the oldest nonces are
	// forgotten first.
	maxNonces = 1 << 20
)

const unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"

// percentEncode encodes s as Alibaba's signature requires (RFC 3986).
func percentEncode(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte(unreserved, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// Params are a request's parameters, each name once.
type Params map[string]string

// StringToSign is the text the signature covers.
func StringToSign(method string, p Params) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(percentEncode(k))
		b.WriteByte('=')
		b.WriteString(percentEncode(p[k]))
	}
	return strings.ToUpper(method) + "&%2F&" + percentEncode(b.String())
}

// Sign returns the signature of toSign with an AccessKey secret.
func Sign(secret, toSign string) string {
	m := hmac.New(sha1.New, []byte(secret+"&"))
	m.Write([]byte(toSign))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// ReadParams collects the parameters of a request from its query and, for
// a form POST, its body. A name given twice (in the query, the body, or
// both) is refused: the signature would not say which one counts.
func ReadParams(r *http.Request) (Params, *Error) {
	p := Params{}
	add := func(vs url.Values) *Error {
		for k, v := range vs {
			if len(v) != 1 {
				return errInvalidParameter(k, fmt.Sprintf("The parameter %q is given %d times.", k, len(v)))
			}
			if _, dup := p[k]; dup {
				return errInvalidParameter(k, fmt.Sprintf("The parameter %q is given twice (query and body).", k))
			}
			p[k] = v[0]
		}
		if len(p) > maxParams {
			return &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: fmt.Sprintf("A request takes at most %d parameters.", maxParams)}
		}
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: "The query string is malformed: " + err.Error()}
	}
	if e := add(q); e != nil {
		return nil, e
	}
	if r.Method == http.MethodPost && r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: "Cannot read the request body: " + err.Error()}
		}
		if len(body) > maxBody {
			return nil, &Error{Status: http.StatusRequestEntityTooLarge, Code: "InvalidParameter", Message: fmt.Sprintf("The request body is larger than %d bytes.", maxBody)}
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if ct != "" && ct != "application/x-www-form-urlencoded" {
				return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidParameter",
					Message: fmt.Sprintf("A request body must be application/x-www-form-urlencoded, not %s.", ct)}
			}
			f, err := url.ParseQuery(string(body))
			if err != nil {
				return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: "The form body is malformed: " + err.Error()}
			}
			if e := add(f); e != nil {
				return nil, e
			}
		}
	}
	return p, nil
}

// AccessKey is an AccessKey pair and the project (tenant) it acts for.
type AccessKey struct {
	ID, Secret, Project string
}

// ParseAccessKey parses "ID:SECRET[:PROJECT]" (project "default" when
// absent).
func ParseAccessKey(s string) (AccessKey, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return AccessKey{}, fmt.Errorf("access key %q: want ID:SECRET or ID:SECRET:PROJECT", redact(s))
	}
	k := AccessKey{ID: parts[0], Secret: parts[1], Project: "default"}
	if len(parts) == 3 {
		if parts[2] == "" {
			return AccessKey{}, fmt.Errorf("access key %s: empty project", k.ID)
		}
		k.Project = parts[2]
	}
	if err := model.ValidName("project", k.Project); err != nil {
		return AccessKey{}, fmt.Errorf("access key %s: project %q: lowercase letters, digits and hyphens, starting with a letter", k.ID, k.Project)
	}
	return k, nil
}

func redact(s string) string {
	id, _, _ := strings.Cut(s, ":")
	return id + ":…"
}

// nonceCache remembers the SignatureNonce of every accepted request for
// MaxClockSkew, so that a captured request cannot be replayed.
type nonceCache struct {
	mu   sync.Mutex
	seen map[string]time.Time
	fifo []nonceEntry
	head int
}

type nonceEntry struct {
	key string
	at  time.Time
}

func newNonceCache() *nonceCache { return &nonceCache{seen: map[string]time.Time{}} }

// use records a nonce; it reports false if the nonce was seen within the
// window.
func (c *nonceCache) use(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Forget expired entries (and the oldest past the bound).
	for c.head < len(c.fifo) {
		e := c.fifo[c.head]
		if now.Sub(e.at) < MaxClockSkew && len(c.seen) < maxNonces {
			break
		}
		if t, ok := c.seen[e.key]; ok && t.Equal(e.at) {
			delete(c.seen, e.key)
		}
		c.fifo[c.head] = nonceEntry{}
		c.head++
	}
	if c.head > 4096 && c.head*2 > len(c.fifo) {
		c.fifo = append(c.fifo[:0], c.fifo[c.head:]...)
		c.head = 0
	}
	if _, dup := c.seen[key]; dup {
		return false
	}
	c.seen[key] = now
	c.fifo = append(c.fifo, nonceEntry{key: key, at: now})
	return true
}

// authenticate checks a request's signature and returns its key.
func (a *API) authenticate(method string, p Params) (AccessKey, *Error) {
	for _, f := range []string{"Signature", "AccessKeyId", "SignatureMethod", "SignatureNonce", "Timestamp"} {
		if p[f] == "" {
			return AccessKey{}, &Error{Status: http.StatusBadRequest, Code: "IncompleteSignature",
				Message: fmt.Sprintf("The request signature does not conform to Aliyun standards: the parameter %s is missing.", f)}
		}
	}
	if p["SignatureMethod"] != "HMAC-SHA1" {
		return AccessKey{}, &Error{Status: http.StatusBadRequest, Code: "IncompleteSignature",
			Message: fmt.Sprintf("The signature method %q is not supported; use HMAC-SHA1.", p["SignatureMethod"])}
	}
	if v, ok := p["SignatureVersion"]; ok && v != "1.0" {
		return AccessKey{}, &Error{Status: http.StatusBadRequest, Code: "IncompleteSignature",
			Message: fmt.Sprintf("The signature version %q is not supported; use 1.0.", v)}
	}
	key, ok := a.keys[p["AccessKeyId"]]
	if !ok {
		return AccessKey{}, &Error{Status: http.StatusNotFound, Code: "InvalidAccessKeyId.NotFound",
			Message: "Specified access key is not found."}
	}
	toSign := StringToSign(method, p)
	want := Sign(key.Secret, toSign)
	if !hmac.Equal([]byte(want), []byte(p["Signature"])) {
		return AccessKey{}, &Error{Status: http.StatusBadRequest, Code: "SignatureDoesNotMatch",
			Message: "Specified signature is not matched with our calculation. server string to sign is:" + toSign}
	}
	ts, err := time.Parse("2006-01-02T15:04:05Z", p["Timestamp"])
	if err != nil {
		return AccessKey{}, &Error{Status: http.StatusBadRequest, Code: "InvalidTimeStamp.Format",
			Message: fmt.Sprintf("Specified time stamp %q is not in the format YYYY-MM-DDThh:mm:ssZ (UTC).", p["Timestamp"])}
	}
	now := a.now()
	if d := now.Sub(ts); d > MaxClockSkew || d < -MaxClockSkew {
		return AccessKey{}, &Error{Status: http.StatusBadRequest, Code: "InvalidTimeStamp.Expired",
			Message: fmt.Sprintf("Specified time stamp or date value is expired: %s is more than %s from the server's clock (%s).", p["Timestamp"], MaxClockSkew, now.UTC().Format(time.RFC3339))}
	}
	if !a.nonces.use(key.ID+"\x00"+p["SignatureNonce"], now) {
		return AccessKey{}, &Error{Status: http.StatusBadRequest, Code: "SignatureNonceUsed",
			Message: "Specified signature nonce was used already."}
	}
	return key, nil
}
