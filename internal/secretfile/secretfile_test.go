package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadAndLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.env")
	body := "# keys\nexport A_KEY=\"from-file\"\nB_KEY = b\n\nC_KEY='c'\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	vals, err := Read(path, "X=…")
	if err != nil {
		t.Fatal(err)
	}
	if vals["A_KEY"] != "from-file" || vals["B_KEY"] != "b" || vals["C_KEY"] != "c" {
		t.Errorf("Read = %q", vals)
	}
	t.Setenv("B_KEY", "from-env")
	got, err := Lookup(path, []string{"A_KEY", "B_KEY", "MISSING_KEY"})
	if err != nil {
		t.Fatal(err)
	}
	if got["A_KEY"] != "from-file" || got["B_KEY"] != "from-env" || len(got) != 2 {
		t.Errorf("Lookup = %q", got)
	}
}

func TestReadRefuses(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.env")
	if err := os.WriteFile(open, []byte("A=supersecret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(open, "X=…"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable file: %v", err)
	}
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("supersecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Read(bad, "X=…")
	if err == nil || !strings.Contains(err.Error(), "line 1") || strings.Contains(err.Error(), "supersecret") {
		t.Errorf("malformed line: %v", err)
	}
}
