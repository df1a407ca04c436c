package guestconfig

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// WriteTree writes every file of r at dir+Path, creating directories, so that
// dir can be copied onto the guest's root (pseudo-paths such as "aliasnet.sh"
// land directly in dir). Paths are confined to dir.
func WriteTree(dir string, r Result) error {
	if dir == "" {
		return errors.New("guestconfig: WriteTree: empty directory")
	}
	for _, f := range r.Files {
		rel, err := cleanRel(f.Path)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("guestconfig: %w", err)
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(dst, f.Content, mode); err != nil {
			return fmt.Errorf("guestconfig: %w", err)
		}
		// WriteFile honours the umask and keeps the mode of an existing file.
		if err := os.Chmod(dst, mode); err != nil {
			return fmt.Errorf("guestconfig: %w", err)
		}
	}
	return nil
}

func cleanRel(p string) (string, error) {
	if p == "" || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("guestconfig: bad file path %q", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("guestconfig: file path %q leaves the tree", p)
		}
	}
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return "", fmt.Errorf("guestconfig: bad file path %q", p)
	}
	return rel, nil
}

// Format writes r for a terminal: each file under a "# ==> PATH <==" header,
// then the apply commands and the notes as comments.
func Format(w io.Writer, r Result) error {
	bw := bufio.NewWriter(w)
	for i, f := range r.Files {
		if i > 0 {
			bw.WriteString("\n")
		}
		fmt.Fprintf(bw, "# ==> %s <==\n", f.Path)
		bw.Write(f.Content)
		if len(f.Content) > 0 && f.Content[len(f.Content)-1] != '\n' {
			bw.WriteString("\n")
		}
	}
	if len(r.Apply) > 0 {
		bw.WriteString("\n# ==> apply <==\n")
		for _, c := range r.Apply {
			bw.WriteString(c + "\n")
		}
	}
	if len(r.Notes) > 0 {
		bw.WriteString("\n# ==> notes <==\n")
		for _, n := range r.Notes {
			bw.WriteString("# - " + n + "\n")
		}
	}
	return bw.Flush()
}

// shellQuote quotes s for POSIX sh. Words made only of safe characters are
// left bare.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("_./:,=+@%-", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// psQuote quotes s as a PowerShell verbatim (single-quoted) string.
// PowerShell also treats the typographic single quotes as quote characters.
func psQuote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'', '\u2018', '\u2019', '\u201a', '\u201b':
			b.WriteRune(r)
		}
		b.WriteRune(r)
	}
	b.WriteByte('\'')
	return b.String()
}
