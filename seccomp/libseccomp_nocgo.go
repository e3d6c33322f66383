//go:build !cgo

package seccomp

import (
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// errNoCgo is returned where libseccomp is needed; the clawrun binary is
// always built with cgo.
var errNoCgo = errors.New("checking syscall names needs libseccomp: this clawrun was built without cgo; rebuild with CGO_ENABLED=1 and libseccomp-dev")

func checkNames(*specs.LinuxSeccomp) error { return errNoCgo }

// Check needs libseccomp to compile the profile; see the cgo version.
func Check(*specs.LinuxSeccomp, string, []uint64) (Verdict, error) { return Verdict{}, errNoCgo }
