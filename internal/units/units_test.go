package units

import "testing"

func TestBytes(t *testing.T) {
	for _, c := range []struct {
		n         uint64
		sep, want string
	}{
		{0, "", "0B"}, {1023, " ", "1023 B"}, {1024, "", "1.0KiB"}, {3 << 20, "", "3.0MiB"},
		{8 << 30, " ", "8.0 GiB"}, {1536, " ", "1.5 KiB"},
	} {
		if got := Bytes(c.n, c.sep); got != c.want {
			t.Errorf("Bytes(%d, %q) = %q, want %q", c.n, c.sep, got, c.want)
		}
	}
}
