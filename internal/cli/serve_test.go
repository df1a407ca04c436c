package cli

import (
	"strings"
	"testing"
)

// Bad retention settings are refused before anything is opened, naming
// the flag.
func TestServeRefusesBadRetention(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--operation-retention", "-5m"}, "--operation-retention -5m0s: must be a positive duration"},
		{[]string{"--operation-retention", "0s"}, "--operation-retention 0s: must be a positive duration"},
		{[]string{"--max-operations", "0"}, "--max-operations 0: must be positive"},
	} {
		root := NewRoot()
		dir := t.TempDir()
		root.SetArgs(append([]string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0"}, tc.args...))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
