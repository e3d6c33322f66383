// Package imagetest builds variants of container images for tests of the
// image store (rootfs) and of the whole binary (test/), so both suites
// craft images the same way.
package imagetest

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// WithCmd is img with another Cmd: another config, so another image ID
// over the same layers.
func WithCmd(t testing.TB, img v1.Image, cmd string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Cmd = []string{cmd}
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
