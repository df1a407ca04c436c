package ecs

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// The example of Alibaba's signature documentation (DescribeRegions with
// AccessKey testid/testsecret).
func TestSignatureVector(t *testing.T) {
	p := Params{"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML", "SignatureMethod": "HMAC-SHA1",
		"SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z",
		"Version": "2014-05-26", "Signature": "ignored"}
	want := "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
	if got := StringToSign("GET", p); got != want {
		t.Fatalf("string to sign:\n%s\nwant\n%s", got, want)
	}
	if got := Sign("testsecret", want); got != "OLeaidS1JvxuMvnyHOwuJ+uX5qY=" {
		t.Fatalf("signature %s", got)
	}
}

func TestPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"abcXYZ019-_.~": "abcXYZ019-_.~",
		"a b":           "a%20b",
		"*":             "%2A",
		"a+b":           "a%2Bb",
		"/":             "%2F",
		"=&":            "%3D%26",
		"é":             "%C3%A9",
		"":              "",
	} {
		if got := percentEncode(in); got != want {
			t.Errorf("percentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

// sdkSign signs v the way the official SDK does (url.Values encoding with
// its three replacements), independently of percentEncode.
func sdkSign(method string, v url.Values, secret string) string {
	c := strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(v.Encode())
	return Sign(secret, method+"&%2F&"+url.QueryEscape(c))
}

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testAPI() *API {
	return New(nil, Options{Keys: []AccessKey{{ID: "ak", Secret: "sk", Project: "p"}}, Now: func() time.Time { return testNow }})
}

func signedValues(extra map[string]string) url.Values {
	v := url.Values{}
	for k, x := range map[string]string{"Action": "DescribeVpcs", "Version": VersionVPC, "RegionId": "cn-hangzhou",
		"AccessKeyId": "ak", "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": "n1",
		"Timestamp": testNow.Format("2006-01-02T15:04:05Z"), "Format": "JSON", "SignatureType": ""} {
		v.Set(k, x)
	}
	for k, x := range extra {
		if x == "\x00" {
			v.Del(k)
		} else {
			v.Set(k, x)
		}
	}
	return v
}

func TestAuthenticate(t *testing.T) {
	for _, c := range []struct {
		name   string
		extra  map[string]string
		resign bool // sign after applying extra
		code   string
	}{
		{"ok", nil, true, ""},
		{"ok with odd characters", map[string]string{"VpcName": "a b*c~d+é/"}, true, ""},
		{"no signature", map[string]string{"Signature": "\x00"}, false, "IncompleteSignature"},
		{"no nonce", map[string]string{"SignatureNonce": "\x00"}, true, "IncompleteSignature"},
		{"no access key", map[string]string{"AccessKeyId": "\x00"}, true, "IncompleteSignature"},
		{"sha256", map[string]string{"SignatureMethod": "HMAC-SHA256"}, true, "IncompleteSignature"},
		{"version 2", map[string]string{"SignatureVersion": "2.0"}, true, "IncompleteSignature"},
		{"unknown key", map[string]string{"AccessKeyId": "nobody"}, true, "InvalidAccessKeyId.NotFound"},
		{"tampered", map[string]string{"RegionId": "cn-beijing"}, false, "SignatureDoesNotMatch"},
		{"bad time", map[string]string{"Timestamp": "yesterday"}, true, "InvalidTimeStamp.Format"},
		{"stale", map[string]string{"Timestamp": testNow.Add(-16 * time.Minute).Format("2006-01-02T15:04:05Z")}, true, "InvalidTimeStamp.Expired"},
		{"future", map[string]string{"Timestamp": testNow.Add(16 * time.Minute).Format("2006-01-02T15:04:05Z")}, true, "InvalidTimeStamp.Expired"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := testAPI()
			v := signedValues(nil)
			v.Set("Signature", sdkSign("POST", v, "sk"))
			for k, x := range c.extra {
				if x == "\x00" {
					v.Del(k)
				} else {
					v.Set(k, x)
				}
			}
			if c.resign {
				v.Del("Signature")
				v.Set("Signature", sdkSign("POST", v, "sk"))
			}
			p := Params{}
			for k := range v {
				p[k] = v.Get(k)
			}
			_, err := a.authenticate("POST", p)
			switch {
			case c.code == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.code != "" && (err == nil || err.Code != c.code):
				t.Fatalf("got %v, want %s", err, c.code)
			}
			if c.code == "" {
				if _, err := a.authenticate("POST", p); err == nil || err.Code != "SignatureNonceUsed" {
					t.Fatalf("replay: %v", err)
				}
			}
		})
	}
}

func TestReadParams(t *testing.T) {
	post := func(query, body, ct string) (Params, *Error) {
		r := httptest.NewRequest("POST", "/?"+query, strings.NewReader(body))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		return ReadParams(r)
	}
	p, err := post("Action=A&X=1", "Y=2&Z=a%20b", "application/x-www-form-urlencoded")
	if err != nil || p["Action"] != "A" || p["X"] != "1" || p["Y"] != "2" || p["Z"] != "a b" {
		t.Fatalf("%v %v", p, err)
	}
	for _, c := range []struct{ query, body, ct string }{
		{"A=1&A=2", "", ""},
		{"A=1", "A=1", "application/x-www-form-urlencoded"},
		{"A=1", "{}", "application/json"},
		{"A=%zz", "", ""},
		{"", strings.Repeat("x", maxBody+1), "application/x-www-form-urlencoded"},
	} {
		if _, err := post(c.query, c.body, c.ct); err == nil {
			t.Errorf("accepted query %q body %.20q", c.query, c.body)
		}
	}
}

func TestParseAccessKey(t *testing.T) {
	for in, want := range map[string]AccessKey{
		"id:secret":        {ID: "id", Secret: "secret", Project: "default"},
		"id:secret:tenant": {ID: "id", Secret: "secret", Project: "tenant"},
	} {
		if got, err := ParseAccessKey(in); err != nil || got != want {
			t.Errorf("ParseAccessKey(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "id", "id:", ":secret", "id:secret:", "a:b:c:d"} {
		if _, err := ParseAccessKey(bad); err == nil {
			t.Errorf("ParseAccessKey(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "secret") && strings.Contains(bad, "secret") && bad != ":secret" {
			t.Errorf("error shows the secret: %v", err)
		}
	}
}

func TestParseInstanceTypes(t *testing.T) {
	yamlDoc := "instanceTypes:\n- name: ecs.c7.large\n  enis: 3\n  privateIpv4PerEni: 10\n  ipv6PerEni: 10\n"
	jsonDoc := `{"instanceTypes":[{"name":"ecs.c7.large","enis":3,"privateIpv4PerEni":10,"ipv6PerEni":10}]}`
	list := "- name: ecs.c7.large\n  enis: 3\n  privateIpv4PerEni: 10\n  ipv6PerEni: 10\n"
	for _, doc := range []string{yamlDoc, jsonDoc, list} {
		ts, err := ParseInstanceTypes([]byte(doc))
		if err != nil || len(ts) != 1 || ts[0] != (model.InstanceType{Name: "ecs.c7.large", ENIs: 3, IPv4PerENI: 10, IPv6PerENI: 10}) {
			t.Errorf("%q: %+v %v", doc, ts, err)
		}
	}
	for _, bad := range []string{
		"instanceTypes:\n- name: x\n  enis: 3\n  privateIpv4PerNic: 10\n", // misspelt field
		"instanceTypes:\n- name: x\n  enis: 0\n  privateIpv4PerEni: 10\n",
		"instanceTypes: 5\n",
	} {
		if _, err := ParseInstanceTypes([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{&model.Error{Code: model.FailedPrecondition, Err: model.ErrENIState}, 400, "InvalidOperation.InvalidEniState"},
		{&model.Error{Code: model.QuotaExceeded, Err: model.ErrIPLimit}, 403, "MaxEniPrivateIpsCountExceeded"},
		{&model.Error{Code: model.QuotaExceeded, Err: model.ErrENILimit}, 403, "EniPerInstanceLimitExceeded"},
		{&model.Error{Code: model.FailedPrecondition, Err: model.ErrDetachPrimary}, 400, "InvalidOperation.DetachPrimaryEniNotAllowed"},
		{&model.Error{Code: model.FailedPrecondition, Err: model.ErrZoneMismatch}, 400, "InvalidOperation.AvailabilityZoneMismatch"},
		{&model.Error{Code: model.InUse, Value: "10.0.0.5", Holder: "projects/p/zones/z/instances/i-1"}, 400, "InvalidPrivateIpAddress.Duplicated"},
		{&model.Error{Code: model.Exhausted}, 403, "InvalidVSwitchId.IpNotEnough"},
		{&model.Error{Code: model.NotFound, Resource: "networkInterface", Reason: "The resource 'projects/p/interfaces/eni-1' was not found"}, 404, "InvalidEniId.NotFound"},
		{&model.Error{Code: model.NotFound, Resource: "instance"}, 404, "InvalidInstanceId.NotFound"},
		{&model.Error{Code: model.Required}, 400, "MissingParameter"},
		{fmt.Errorf("wrapped: %w", control.ErrIdempotentMismatch), 400, "IdempotentFailed"},
		{errors.New("boom"), 500, "InternalError"},
	} {
		e := toError(c.err)
		if e.Status != c.status || e.Code != c.code {
			t.Errorf("%v: got %d %s, want %d %s", c.err, e.Status, e.Code, c.status, c.code)
		}
	}
	if e := toError(&model.Error{Code: model.InUse, Value: "10.0.0.5", Holder: "projects/p/zones/z/instances/i-1"}); !strings.Contains(e.Message, "instance i-1") {
		t.Errorf("holder not named: %s", e.Message)
	}
	if e := toError(&model.Error{Code: model.NotFound, Resource: "networkInterface", Reason: "The resource 'projects/p/interfaces/eni-1' was not found"}); !strings.Contains(e.Message, `"eni-1"`) {
		t.Errorf("ID not named: %s", e.Message)
	}
}

func TestListParams(t *testing.T) {
	q := &req{p: Params{"PrivateIpAddress.2": "b", "PrivateIpAddress.10": "c", "PrivateIpAddress.1": "a",
		"PrivateIpAddress.x": "no", "PrivateIpAddress.01": "no", "PrivateIpAddress.0": "no", "PrivateIpAddresses.1": "no"}}
	got, ok := q.list("PrivateIpAddress")
	if !ok || strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("list: %v", got)
	}
	for in, want := range map[string]string{`["i-1","i-2"]`: "i-1,i-2", "i-1, i-2": "i-1,i-2", `"i-1"`: "i-1", "": ""} {
		if got := strings.Join(splitIDs(in), ","); got != want {
			t.Errorf("splitIDs(%q) = %q", in, got)
		}
	}
	ids := []string{"a", "b", "c", "d", "e"}
	var all []string
	for tok := ""; ; {
		lo, hi, next := tokenPage(ids, tok, 2)
		all = append(all, ids[lo:hi]...)
		if next == "" {
			break
		}
		tok = next
	}
	if strings.Join(all, "") != "abcde" {
		t.Fatalf("token paging: %v", all)
	}
}

// The whole handler refuses malformed requests with JSON errors before it
// needs the control plane.
func TestHandlerEnvelope(t *testing.T) {
	a := testAPI()
	for _, c := range []struct {
		method, target string
		status         int
		code           string
	}{
		{"PUT", "/", 405, "UnsupportedHTTPMethod"},
		{"GET", "/", 400, "MissingParameter"},
		{"GET", "/?Action=DescribeVpcs", 400, "MissingParameter"},
		{"GET", "/?Action=DescribeVpcs&Version=2016-04-28", 400, "IncompleteSignature"},
	} {
		w := httptest.NewRecorder()
		a.ServeHTTP(w, httptest.NewRequest(c.method, c.target, nil))
		body := w.Body.String()
		if w.Code != c.status || !strings.Contains(body, `"Code":"`+c.code+`"`) || !strings.Contains(body, `"RequestId":"`) ||
			!strings.Contains(body, `"HostId":"`) || w.Header().Get("Content-Type") != "application/json;charset=utf-8" {
			t.Errorf("%s %s: %d %s", c.method, c.target, w.Code, body)
		}
	}
	// A signed request for an unknown action or a wrong version.
	for _, c := range []struct {
		action, version string
		status          int
		code            string
	}{
		{"DescribeNothing", VersionECS, 404, "InvalidAction.NotFound"},
		{"AssignPrivateIpAddresses", VersionVPC, 400, "InvalidVersion"},
		{"AssociateVpcCidrBlock", VersionECS, 400, "InvalidVersion"},
	} {
		v := signedValues(map[string]string{"Action": c.action, "Version": c.version, "SignatureNonce": c.action + c.version})
		v.Set("Signature", sdkSign("GET", v, "sk"))
		w := httptest.NewRecorder()
		a.ServeHTTP(w, httptest.NewRequest("GET", "/?"+v.Encode(), nil))
		if w.Code != c.status || !strings.Contains(w.Body.String(), `"Code":"`+c.code+`"`) {
			t.Errorf("%s %s: %d %s", c.action, c.version, w.Code, w.Body)
		}
	}
}

// FuzzSignedRequest: any request parses without panicking; a request the
// SDK's way of signing signs verifies, and changing any parameter breaks
// the signature.
func FuzzSignedRequest(f *testing.F) {
	f.Add("POST", "Action=AssignPrivateIpAddresses&PrivateIpAddress.1=10.0.0.5", "NetworkInterfaceId=eni-1&Name=a%20b*~")
	f.Add("GET", "VpcName=%E4%B8%AD", "")
	f.Add("POST", "", "a=1&a=2")
	f.Add("POST", "x=%zz", "y=")
	f.Fuzz(func(t *testing.T, method, query, body string) {
		if method != "GET" {
			method = "POST"
		}
		r, err := http.NewRequest(method, "http://h/?"+query, strings.NewReader(body))
		if err != nil {
			return
		}
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		p, perr := ReadParams(r)
		if perr != nil {
			return
		}
		// Sign what was parsed, as a client would have.
		v := signedValues(nil)
		for k, x := range p {
			if _, reserved := v[k]; !reserved && k != "Signature" {
				v.Set(k, x)
			}
		}
		v.Set("SignatureNonce", fmt.Sprint(len(query), query, body))
		v.Set("Signature", sdkSign(method, v, "sk"))
		ps := Params{}
		for k := range v {
			ps[k] = v.Get(k)
		}
		a := testAPI()
		if _, err := a.authenticate(method, ps); err != nil {
			t.Fatalf("a correctly signed request was refused: %v (%v)", err, ps)
		}
		for k := range ps {
			if k == "Signature" {
				continue
			}
			bad := Params{}
			for kk, x := range ps {
				bad[kk] = x
			}
			bad[k] += "x"
			if _, err := testAPI().authenticate(method, bad); err == nil {
				t.Fatalf("changing %s kept the signature valid", k)
			}
		}
	})
}
