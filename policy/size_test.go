package policy

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"1048576", 1 << 20, ""},
		{"0", 0, ""},
		{"512k", 512 << 10, ""},
		{"512K", 512 << 10, ""},
		{"256M", 256 << 20, ""},
		{"256m", 256 << 20, ""},
		{"1G", 1 << 30, ""},
		{"2T", 2 << 40, ""},
		{"256MB", 256 << 20, ""},
		{"256MiB", 256 << 20, ""},
		{"100b", 100, ""},
		{" 64M ", 64 << 20, ""},
		{"", 0, "invalid size"},
		{"12X", 0, `invalid size "12X": use a number with an optional K, M or G suffix, e.g. 256M`},
		{"M", 0, "invalid size"},
		{"1.5G", 0, "invalid size"},
		{"-1M", 0, "invalid size"},
		{"+1M", 0, "invalid size"},
		{"1 G", 0, "invalid size"},
		{"256iB", 0, "invalid size"},
		{"1Gi", 1 << 30, ""},
		{"99999999999999999999", 0, "too large"},
		{"9999999999999G", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSize(%q) = %d, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{4 << 20: "4M", 1 << 30: "1G", 1536: "1536", 0: "0", 3 << 10: "3K"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
