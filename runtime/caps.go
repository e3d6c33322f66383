package runtime

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// WithCapabilities grants caps (names such as CAP_NET_BIND_SERVICE, as
// validated by the policy package) on top of WithNoCapabilities. They go
// into the bounding, effective, permitted, inheritable and ambient sets:
// ambient (which the kernel only accepts for capabilities that are also
// permitted and inheritable) is what keeps them across execve for a
// non-root agent user, so an agent running as uid 1000 really holds what
// its file grants. Only the granted capabilities are raised; every other
// one stays dropped from every set.
func WithCapabilities(caps []string) SpecOpt {
	return func(s *specs.Spec) error {
		if len(caps) == 0 {
			return nil
		}
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		c := s.Process.Capabilities
		if c == nil {
			c = &specs.LinuxCapabilities{}
			s.Process.Capabilities = c
		}
		for _, name := range caps {
			if !strings.HasPrefix(name, "CAP_") || strings.ToUpper(name) != name {
				return fmt.Errorf("capability %q: want an upper-case CAP_ name", name)
			}
			for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Permitted, &c.Inheritable, &c.Ambient} {
				if !slices.Contains(*set, name) {
					*set = append(*set, name)
				}
			}
		}
		return nil
	}
}
