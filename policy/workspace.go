package policy

import (
	"fmt"
	"path/filepath"
)

// WorkspacePath is where an agent's persistent workspace appears inside its
// container (agents.NAME.workspace: true).
const WorkspacePath = "/workspace"

// WorkspaceDir is the host directory behind an agent's /workspace: clawrun's
// own, under its data directory, never a path a user grants. dataDir should
// be absolute and free of symlinks.
func WorkspaceDir(dataDir, agent string) string {
	return filepath.Join(dataDir, "workspaces", agent)
}

// WithDataDir names clawrun's data directory (--data). An agent with
// workspace: true keeps its /workspace below it (WorkspaceDir), which is
// checked by self-edit protection like a read-write grant.
func WithDataDir(dir string) Option {
	return func(o *options) { o.dataDir = dir }
}

// WithWritableRoot returns a copy of a plan with writable_rootfs: true whose
// root filesystem the runtime assembles at dir (an overlay of Rootfs, or a
// copy of it); Rootfs itself stays the untouched, shared base.
func (p *Plan) WithWritableRoot(dir string) (*Plan, error) {
	if !p.WritableRootfs {
		return nil, fmt.Errorf("agent %s does not ask for a writable root filesystem", p.Name)
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("agent %s: writable root %q is not absolute", p.Name, dir)
	}
	c := *p
	c.WritableRoot = filepath.Clean(dir)
	return &c, nil
}

// flag reads an optional true/false field (false when absent).
func (l *loader) flag(m *fields, path, key string) bool {
	var b bool
	l.boolField(m, path, key, &b)
	return b
}

// workspace sets up agents.NAME.workspace: true. The host directory is
// produced here from the data directory, so neither the allowlist nor the
// blocked paths (which hold the data directory) apply to it, but it goes
// through self-edit protection like any read-write grant.
func (l *loader) workspace(p *Plan, m *fields, path string) {
	if !l.flag(m, path, "workspace") {
		return
	}
	p.Workspace = true
	line := m.keys["workspace"].Line
	for _, g := range p.Grants {
		// Grants below /workspace are mounted after it, over it; one on it
		// would hide it.
		if g.Path == WorkspacePath {
			l.c.addRule(line, path+".workspace", RuleContainerPath, "the workspace is mounted on %s, which a grant also uses: remove that grant or move it elsewhere", WorkspacePath)
			return
		}
	}
	if l.ck == nil || l.ck.dataDir == "" {
		return // the runtime refuses a workspace without a data directory
	}
	p.WorkspaceDir = WorkspaceDir(l.ck.dataDir, p.Name)
	l.rw = append(l.rw, rwGrant{field: path + ".workspace", line: line, host: p.WorkspaceDir})
}
