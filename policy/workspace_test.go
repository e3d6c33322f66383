package policy

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWorkspaceAndWritableRootfs(t *testing.T) {
	f := newFixture(t)
	data := filepath.Join(f.dir, "clawrun-data")
	path := f.agentFile(t, "    workspace: true\n    writable_rootfs: true\n")
	file, err := Load(path, WithAllowlist(only(ReadWrite)), WithDataDir(data), WithClawrunDirs(data))
	if err != nil {
		t.Fatal(err)
	}
	p := file.Agents["demo"]
	// The data dir is blocked for grants, but the workspace is clawrun's own.
	if !p.Workspace || p.WorkspaceDir != filepath.Join(data, "workspaces", "demo") || !p.WritableRootfs || p.WritableRoot != "" {
		t.Fatalf("plan: workspace %v %q, writable %v %q", p.Workspace, p.WorkspaceDir, p.WritableRootfs, p.WritableRoot)
	}
	w, err := p.WithWritableRoot("/x/root")
	if err != nil || w.WritableRoot != "/x/root" || w.Rootfs != p.Rootfs || p.WritableRoot != "" {
		t.Fatalf("WithWritableRoot: %+v, %v", w, err)
	}

	// Without a data dir the plan has no workspace dir; the runtime refuses it.
	file, err = Load(path, WithAllowlist(only(ReadWrite)))
	if err != nil || file.Agents["demo"].WorkspaceDir != "" {
		t.Fatalf("without data dir: %v", err)
	}
	// Off by default.
	file, err = Load(f.agentFile(t, ""), WithAllowlist(only(ReadWrite)), WithDataDir(data))
	if err != nil || file.Agents["demo"].Workspace || file.Agents["demo"].WritableRootfs {
		t.Fatalf("defaults: %v", err)
	}
}

func TestWorkspaceBad(t *testing.T) {
	f := newFixture(t)
	data := filepath.Join(f.dir, "clawrun-data")
	opts := []Option{WithAllowlist(only(ReadWrite)), WithDataDir(data)}
	_, err := Load(f.agentFile(t, "    workspace: yes\n    writable_rootfs: 1\n"), opts...)
	wantErr(t, err, 5, "agents.demo.workspace", "", `must be true or false, not the string "yes"`)
	wantErr(t, err, 6, "agents.demo.writable_rootfs", "", "must be true or false, not the number 1")

	_, err = Load(f.agentFile(t, "    grants:\n      - {host: data, path: /workspace}\n    workspace: true\n"), opts...)
	wantErr(t, err, 7, "agents.demo.workspace", RuleContainerPath, "a grant also uses")

	// An agent file inside the agent's own workspace.
	ws := filepath.Join(data, "workspaces", "demo")
	if err := os.MkdirAll(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(ws, "clawrun.yaml")
	if err := os.WriteFile(inside, []byte("agents:\n  demo:\n    rootfs: "+f.rootfs+"\n    command: [/agent]\n    workspace: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(inside, opts...)
	wantErr(t, err, 5, "agents.demo.workspace", RuleSelfEdit, "contains the agent file")
}
