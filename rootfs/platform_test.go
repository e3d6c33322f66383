package rootfs

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/clawrun/clawrun/internal/imagetest"
)

// otherArch is an architecture that is not the host's.
func otherArch() string {
	if hostPlatform().Architecture == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// forArch is img with its config saying arch.
func forArch(t *testing.T, img v1.Image, arch, variant string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.Variant = arch, variant
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pushIndex serves, at ref, an index of host and other, with an
// attestation entry as buildkit adds (which is never picked or listed).
func pushIndex(t *testing.T, ref string, host, other v1.Image) (idxDigest string) {
	t.Helper()
	att := forArch(t, imagetest.WithCmd(t, host, "attestation"), "unknown", "")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: hostPlatform().Architecture}}},
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch(), Variant: "v8"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
	)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// A registry index with two platforms: the host's is taken by default,
// --platform (Store.Platform) takes the other, a platform the index lacks
// fails listing what it offers, and a tag cached for one platform is not
// handed to a run wanting another.
func TestPullPlatformFromIndex(t *testing.T) {
	host, _ := testRegistry(t, nil)
	mine := testImage(t)
	other := forArch(t, imagetest.WithCmd(t, mine, "other"), otherArch(), "v8")
	ref := host + "/team/multi:v1"
	idxDigest := pushIndex(t, ref, mine, other)
	s := newStore(t)

	img, err := s.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != imageID(t, mine) || img.Architecture != hostPlatform().Architecture {
		t.Errorf("default platform: got %s (%s), want the host's image %s", img.ID, img.Architecture, imageID(t, mine))
	}

	s.Platform, err = ParsePlatform("linux/" + otherArch())
	if err != nil {
		t.Fatal(err)
	}
	// The tag is in the store, but for the host: Resolve must fetch.
	img, err = s.Resolve(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != imageID(t, other) || img.Architecture != otherArch() {
		t.Errorf("--platform linux/%s: got %s (%s), want %s", otherArch(), img.ID, img.Architecture, imageID(t, other))
	}
	// A variant the index names is matched; one it lacks is not.
	if s.Platform, err = ParsePlatform("linux/" + otherArch() + "/v8"); err != nil {
		t.Fatal(err)
	}
	if img, err = s.Pull(context.Background(), ref); err != nil || img.ID != imageID(t, other) {
		t.Errorf("variant v8: %v %v", img, err)
	}

	// Pinned by the index's digest: the platform's manifest is taken and
	// the pin is checked against the index, not the manifest.
	s.Platform = nil
	pinned := host + "/team/multi@" + idxDigest
	if img, err = s.Pull(context.Background(), pinned); err != nil || img.ID != imageID(t, mine) {
		t.Errorf("pinned index digest: %v %v", img, err)
	}

	for _, p := range []string{"linux/s390x", "linux/" + otherArch() + "/v7"} {
		s.Platform, err = ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Pull(context.Background(), ref)
		want := "no image for " + p + ": the index offers linux/" + hostPlatform().Architecture + ", linux/" + otherArch() + "/v8 (choose one with --platform)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", p, err, want)
		}
	}
}

// An image without an index is checked against the platform asked for.
func TestPullPlatformSingleImage(t *testing.T) {
	host, _ := testRegistry(t, nil)
	ref := host + "/team/single:v1"
	push(t, ref, forArch(t, testImage(t), otherArch(), ""))
	s := newStore(t)
	_, err := s.Pull(context.Background(), ref)
	if err == nil || !strings.Contains(err.Error(), "image is for "+otherArch()) || !strings.Contains(err.Error(), "--platform linux/"+otherArch()) {
		t.Errorf("a foreign single image: %v", err)
	}
	assertEmpty(t, s)
	if s.Platform, err = ParsePlatform("linux/" + otherArch()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), ref); err != nil {
		t.Errorf("with --platform linux/%s: %v", otherArch(), err)
	}
}

func TestParsePlatform(t *testing.T) {
	for _, ok := range []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7"} {
		if _, err := ParsePlatform(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, msg := range map[string]string{
		"amd64":           "write os/arch",
		"linux/":          "write os/arch",
		"windows/amd64":   "linux images only",
		"linux/arm/v7/x":  "write os/arch",
		"linux/amd64:10":  "write os/arch",
		"darwin/arm64/v8": "linux images only",
	} {
		if _, err := ParsePlatform(bad); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want %q", bad, err, msg)
		}
	}
}
