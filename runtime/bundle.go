package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/clawrun/clawrun/rootfs"
)

// WriteBundle writes an OCI bundle for a prepared agent: config.json and a
// copy of the root filesystem in DIR/rootfs, so `runc run -b DIR` runs the
// same container clawrun would. The bundle's cgroup path is left to the
// runtime that runs it.
func WriteBundle(p *Prepared, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	dst := filepath.Join(dir, "rootfs")
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("bundle %s: %s already exists: choose an empty directory", dir, dst)
	}
	if err := rootfs.Copy(p.Plan.Rootfs, dst); err != nil {
		_ = os.RemoveAll(dst)
		return fmt.Errorf("bundle %s: copy rootfs: %w", dir, err)
	}
	s := *p.Spec
	root := *s.Root
	root.Path = "rootfs"
	s.Root = &root
	b, err := json.MarshalIndent(&s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644)
}

// SpecJSON is the OCI config.json of a prepared agent.
func SpecJSON(p *Prepared) ([]byte, error) {
	b, err := json.MarshalIndent(p.Spec, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
