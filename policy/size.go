package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseSize parses a size such as "256M", "1G", "512k" or "1048576" into
// bytes. Units are binary (K = 1024, M = 1024², G = 1024³, T = 1024⁴), are
// case-insensitive and may be followed by "B", "i" or "iB" ("256MB", "1Gi", "256MiB"). Only whole
// numbers are accepted, so a size means exactly one number of bytes.
func ParseSize(s string) (int64, error) {
	bad := func() (int64, error) {
		return 0, fmt.Errorf("invalid size %q: use a number with an optional K, M or G suffix, e.g. 256M", s)
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return bad()
	}
	lower := strings.ToLower(t)
	// A trailing "B", "i" or "iB" is decoration: "256MB", "1Gi", "256MiB", "512b".
	lower = strings.TrimSuffix(lower, "b")
	if n := len(lower); n > 1 && lower[n-1] == 'i' && strings.IndexByte("kmgt", lower[n-2]) >= 0 {
		lower = lower[:n-1]
	}
	mult := int64(1)
	if n := len(lower); n > 0 {
		switch lower[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			lower = lower[:n-1]
		}
	}
	if lower == "" {
		return bad()
	}
	for i := 0; i < len(lower); i++ {
		if !isDigit(lower[i]) {
			return bad()
		}
	}
	n, err := strconv.ParseInt(lower, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * mult, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// formatSize renders bytes with the largest binary unit that divides them
// exactly, the inverse of ParseSize, for messages.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
