//go:build seccomp && cgo

package seccomp

import (
	"fmt"

	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// With -tags seccomp, runc's seccomp package is the real one: also check the
// filter exactly as runc's init builds and loads it (BPF patching included).
func init() {
	childLoaders["runc"] = loadWithRunc
}

func loadWithRunc(p *specs.LinuxSeccomp) error {
	cfg, err := specconv.SetupSeccomp(p)
	if err != nil {
		return fmt.Errorf("runc conversion: %w", err)
	}
	// runc's init sets no_new_privs itself before loading; so must we.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	fd, err := seccomp.InitSeccomp(cfg)
	if err != nil {
		return err
	}
	if fd >= 0 {
		unix.Close(fd)
	}
	return nil
}
