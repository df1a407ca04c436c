package model

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"testing"
)

// The fingerprint is stored with every interface and held by clients
// between a read and a write, so its bytes must not change with the
// implementation: compare with the original formatting.
func TestContentFingerprintStable(t *testing.T) {
	reference := func(ifc *Interface) string {
		h := sha256.New()
		fmt.Fprintf(h, "%s|%s|%s|%d|%s|%s|", ifc.ID, ifc.IP, ifc.Instance, ifc.Device, ifc.ExternalIP, ifc.Subnet)
		for _, a := range ifc.Aliases {
			fmt.Fprintf(h, "%s/%s,", a.Range, a.RangeName)
		}
		return hex.EncodeToString(h.Sum(nil)[:8])
	}
	for _, ifc := range []*Interface{
		{},
		{ID: "eni-1", IP: netip.MustParseAddr("10.0.0.2"), Subnet: "us-central1/s", Device: 3,
			Instance: "us-central1-a/vm", ExternalIP: netip.MustParseAddr("203.0.113.7")},
		{ID: "1", IP: netip.MustParseAddr("fd00::5"), Aliases: []Alias{
			{Range: netip.MustParsePrefix("10.1.0.0/24"), RangeName: "pods"},
			{Range: netip.MustParsePrefix("10.0.0.9/32")},
			{RangeName: "zero"},
		}},
	} {
		if got, want := ifc.ContentFingerprint(), reference(ifc); got != want {
			t.Errorf("%+v: fingerprint %s, want %s", ifc, got, want)
		}
	}
}

// Adding or removing an access config changes the fingerprint even when
// no external address is held (a stopped instance).
func TestContentFingerprintAccessConfig(t *testing.T) {
	base := Interface{ID: "1", IP: netip.MustParseAddr("10.0.0.2")}
	with := base
	with.AccessConfig = &AccessConfig{Name: "External NAT", NetworkTier: "PREMIUM", Ephemeral: true}
	other := base
	other.AccessConfig = &AccessConfig{Name: "External NAT", NetworkTier: "STANDARD", Ephemeral: true}
	fps := map[string]bool{base.ContentFingerprint(): true, with.ContentFingerprint(): true, other.ContentFingerprint(): true}
	if len(fps) != 3 {
		t.Errorf("fingerprints with no, a PREMIUM and a STANDARD access config: %d distinct, want 3", len(fps))
	}
}
