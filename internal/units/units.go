// Package units formats sizes the same way for every command and message.
package units

import "fmt"

// Bytes formats n in binary units with one decimal ("512B", "3.0MiB"),
// sep going between the number and the unit (" " for prose: "3.0 MiB").
func Bytes(n uint64, sep string) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d%sB", n, sep)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%s%ciB", float64(n)/float64(div), sep, "KMGTPE"[exp])
}
