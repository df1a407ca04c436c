package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// aliasFlipper is one client of the alias-update benchmarks: it moves its
// instance's nic0 alias back and forth between two addresses with
// updateNetworkInterface (PATCH with the NIC fingerprint), so every
// request releases one address and allocates another. It is written to
// cost the shared cores little: the fingerprint is a hash of the NIC's
// content, so each of the two request bodies is built once and reused,
// and replies are decoded only as far as their status and error.
type aliasFlipper struct {
	hc    *http.Client
	inst  string // the instance's URL
	alias [2]string
	body  [2][]byte // moves the alias to alias[i]; nil until built
	cur   int       // index of the alias held now; -1: neither (start)
	fp0   string    // the starting NIC's fingerprint
}

func newAliasFlipper(hc *http.Client, instanceURL string, alias [2]string) (*aliasFlipper, error) {
	f := &aliasFlipper{hc: hc, inst: instanceURL, alias: alias, cur: -1}
	fp, err := f.fingerprint()
	f.fp0 = fp
	return f, err
}

func (f *aliasFlipper) fingerprint() (string, error) {
	resp, err := f.hc.Get(f.inst)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var in struct {
		NetworkInterfaces []struct{ Fingerprint string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil || len(in.NetworkInterfaces) == 0 {
		return "", fmt.Errorf("get %s: HTTP %d, %v", f.inst, resp.StatusCode, err)
	}
	return in.NetworkInterfaces[0].Fingerprint, nil
}

// flip moves the alias to the other address and waits for the reply.
func (f *aliasFlipper) flip() error {
	next := 0
	if f.cur == 0 {
		next = 1
	}
	body := f.body[next]
	if f.cur < 0 || body == nil {
		fp := f.fp0
		if f.cur >= 0 {
			var err error
			if fp, err = f.fingerprint(); err != nil {
				return err
			}
		}
		body, _ = json.Marshal(map[string]any{"fingerprint": fp, "aliasIpRanges": []map[string]string{{"ipCidrRange": f.alias[next]}}})
		if f.cur >= 0 {
			f.body[next] = body // from alias[cur] to alias[next]: the same every time
		}
	}
	req, _ := http.NewRequest(http.MethodPatch, f.inst+"/updateNetworkInterface?networkInterface=nic0", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.hc.Do(req)
	if err != nil {
		return err
	}
	var op struct {
		Status string
		Error  *struct {
			Errors []struct{ Code, Message string }
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&op)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || op.Error != nil || op.Status != "DONE" {
		return fmt.Errorf("update %s: HTTP %d, status %q, %+v, %v", f.inst, resp.StatusCode, op.Status, op.Error, err)
	}
	f.cur = next
	return nil
}
