package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkBlockedWalk is the check every run makes of a granted directory
// for blocked names and private keys (blockedWalk): here a tree of 20,000
// files in 100 directories, none blocked, so the whole tree is read.
// `make bench` reports it per entry.
func BenchmarkBlockedWalk(b *testing.B) {
	dir := b.TempDir()
	const dirs, files = 100, 200
	for i := range dirs {
		d := filepath.Join(dir, fmt.Sprintf("d%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		for j := range files {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d.txt", j)), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	pats := blockedPatterns(DefaultAllowlist(""), nil)
	b.ResetTimer()
	for b.Loop() {
		hits, err := blockedWalk(pats, dir)
		if err != nil || len(hits) != 0 {
			b.Fatalf("walk: %v %v", hits, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(dirs*(files+1)), "ns/entry")
}
