package rootfs

import (
	"fmt"
	goruntime "runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ParsePlatform parses "os/arch[/variant]" as docker's --platform does.
// Containers here are Linux containers, so the OS must be linux.
func ParsePlatform(s string) (*v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" || strings.Count(s, "/") > 2 || strings.Contains(s, ":") {
		return nil, fmt.Errorf("platform %q: write os/arch[/variant], e.g. linux/arm64 or linux/arm/v7", s)
	}
	if p.OS != "linux" {
		return nil, fmt.Errorf("platform %q: clawrun runs linux images only: write linux/%s", s, p.Architecture)
	}
	return p, nil
}

// hostPlatform is the platform taken from an index unless one is asked for.
func hostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
}

// platform is the platform the store pulls: s.Platform, or the host's.
func (s *Store) platform() v1.Platform {
	if s.Platform != nil {
		return *s.Platform
	}
	return hostPlatform()
}

// fits reports whether an image already in the store is for the platform
// the store pulls, so a tag pulled for another platform is fetched again
// rather than run. Records carry no variant: OS and architecture decide;
// records without them (never written today) are taken as fitting.
func (s *Store) fits(img *Image) bool {
	p := s.platform()
	return (img.OS == "" || img.OS == p.OS) && (img.Architecture == "" || img.Architecture == p.Architecture)
}

// pickPlatform chooses from an index's entries the image for want (its
// variant, when want names one); an error lists what the index offers.
// Attestation entries ("unknown/unknown") are neither picked nor listed.
func pickPlatform(ms []v1.Descriptor, want v1.Platform) (*v1.Descriptor, error) {
	var offered []string
	for i := range ms {
		d := &ms[i]
		if d.Platform == nil || d.Platform.OS == "unknown" {
			continue
		}
		if d.Platform.Satisfies(want) {
			return d, nil
		}
		offered = append(offered, d.Platform.String())
	}
	if len(offered) == 0 {
		return nil, fmt.Errorf("no image for %s: its index names no platforms", want)
	}
	return nil, fmt.Errorf("no image for %s: the index offers %s (choose one with --platform)", want, strings.Join(offered, ", "))
}

// allPlatforms reports whether every entry of an index names its platform.
func allPlatforms(ms []v1.Descriptor) bool {
	for _, d := range ms {
		if d.Platform == nil {
			return false
		}
	}
	return len(ms) > 0
}

// checkPlatform refuses an image whose config is for another platform
// than the one asked for: a single-platform image (no index to choose
// from) or an index entry that mislabels its image.
func checkPlatform(cf *v1.ConfigFile, want v1.Platform) error {
	if cf.OS != "" && cf.OS != want.OS {
		return fmt.Errorf("image is for %s, not %s", cf.OS, want.OS)
	}
	if cf.Architecture != "" && cf.Architecture != want.Architecture {
		hint := fmt.Sprintf("pull the %s variant", want.Architecture)
		if want.Architecture == goruntime.GOARCH {
			hint += fmt.Sprintf(", or name its platform with --platform linux/%s", cf.Architecture)
		}
		return fmt.Errorf("image is for %s, %s was asked for: %s", cf.Architecture, want.Architecture, hint)
	}
	if want.Variant != "" && cf.Variant != "" && cf.Variant != want.Variant {
		return fmt.Errorf("image is for %s/%s, %s was asked for", cf.Architecture, cf.Variant, want)
	}
	return nil
}
