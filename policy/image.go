package policy

import (
	"fmt"
	"maps"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"gopkg.in/yaml.v3"

	"github.com/clawrun/clawrun/rootfs"
)

// fileSet records what the agent file (or the ad-hoc flags) set itself, so
// an image's config fills in only the rest (WithImage).
type fileSet struct {
	command bool // the agent file's command: replaces Entrypoint and Cmd
	// cmd (ad hoc: CMD after --) replaces the image's Cmd and keeps its
	// Entrypoint; entrypoint (ad hoc: --entrypoint, set when entrySet)
	// replaces the Entrypoint and drops the image's Cmd, as in docker.
	cmd        []string
	entrypoint []string
	entrySet   bool
	workdir    bool
	env        map[string]string
}

// image checks agents.NAME.image. A registry reference is only parsed (no
// network); the path of an oci-layout: or docker-archive: source is
// resolved against the agent file's directory, must exist, and is checked
// against the blocked paths as a rootfs is.
func (l *loader) image(v *yaml.Node, field string) string {
	s, ok := l.scalar(v, field, "an image reference, e.g. alpine:3.20, oci-layout:./dir or docker-archive:./image.tar")
	if !ok {
		return ""
	}
	r, is, err := resolveImage(l.dir, s, l.ck)
	switch {
	case err != nil:
		l.c.add(v.Line, field, "%v", err)
	case is != nil:
		l.c.addRule(v.Line, field, is.rule, "image %s", is.msg)
	}
	return r
}

func resolveImage(base, s string, ck *checker) (string, *issue, error) {
	if err := checkPathChars(s); err != nil {
		return "", nil, fmt.Errorf("%q %v", s, err)
	}
	if t, rest, pick, ok := rootfs.SplitLocal(s); ok {
		if rest == "" {
			return "", nil, fmt.Errorf("%q names no path: write %s:./path", s, t)
		}
		r, err := resolveHost(base, rest)
		if err != nil {
			return "", nil, fmt.Errorf("image %q: %w", s, err)
		}
		fi, err := os.Stat(r)
		switch {
		case err != nil:
			return "", nil, fmt.Errorf("image %q: %w", s, err)
		case t == rootfs.TransportOCILayout && !fi.IsDir():
			return "", nil, fmt.Errorf("image %q (%s) is not a directory: an OCI image layout is a directory holding index.json and blobs/", s, r)
		case t == rootfs.TransportDockerArchive && !fi.Mode().IsRegular():
			return "", nil, fmt.Errorf("image %q (%s) is not a file: a docker-archive is the tarball docker save writes", s, r)
		}
		if is := ck.rootfs(rest, r); is != nil {
			return "", is, nil
		}
		return t + ":" + r + pick, nil, nil
	}
	if _, err := name.ParseReference(s); err != nil {
		return "", nil, fmt.Errorf("invalid image reference %q: %v: write e.g. alpine:3.20, registry.example.com/team/agent@sha256:…, oci-layout:./dir or docker-archive:./image.tar", s, err)
	}
	return s, nil, nil
}

// ImageDefaults is what an image's config says about running it.
type ImageDefaults struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=VALUE
	WorkingDir string
	User       *User // nil when the image names no user
}

// WithImage returns a copy of an image agent's plan that runs in rootfs,
// the unpacked image id, with the image's config filling in what the
// agent file leaves out:
//   - command: the file's command replaces Entrypoint and Cmd as a whole
//     (as does `clawrun run AGENT -- CMD`); without one the agent runs
//     Entrypoint followed by Cmd. Ad hoc (`clawrun run --image REF -- CMD`)
//     follows docker instead: CMD replaces Cmd only, and --entrypoint
//     replaces Entrypoint and drops the image's Cmd.
//   - env: the image's variables, each overridden by the file's; PATH and
//     HOME defaulted when neither sets them.
//   - workdir: the file's, else the image's WorkingDir, else /.
//   - user: the file's, else the image's User, else the runtime's default.
func (p *Plan) WithImage(rootfs, id string, d ImageDefaults) (*Plan, error) {
	if p.Image == "" {
		return nil, fmt.Errorf("agent %s names no image", p.Name)
	}
	c := *p
	c.Rootfs, c.ImageID = rootfs, id
	if !p.set.command {
		entry, cmd := d.Entrypoint, d.Cmd
		if p.set.entrySet {
			entry, cmd = p.set.entrypoint, nil
		}
		if p.set.cmd != nil {
			cmd = p.set.cmd
		}
		argv := append(append([]string(nil), entry...), cmd...)
		if len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("agent %s: image %s has neither Entrypoint nor Cmd: give the command (command: in the agent file, or -- CMD... on the command line)", p.Name, p.Image)
		}
		for _, a := range argv {
			if err := checkArg(a); err != nil {
				return nil, fmt.Errorf("agent %s: image %s command: %w", p.Name, p.Image, err)
			}
		}
		c.Command = argv
	}
	vars := map[string]string{}
	for _, kv := range d.Env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" || strings.ContainsRune(kv, 0) {
			return nil, fmt.Errorf("agent %s: image %s has an invalid environment entry %q", p.Name, p.Image, kv)
		}
		vars[k] = v
	}
	maps.Copy(vars, p.set.env)
	c.Env = buildEnv(vars)
	if !p.set.workdir && d.WorkingDir != "" {
		w, err := parseWorkdir(d.WorkingDir)
		if err != nil {
			return nil, fmt.Errorf("agent %s: image %s WorkingDir: %w", p.Name, p.Image, err)
		}
		c.Workdir = w
	}
	if !p.UserSet && d.User != nil {
		c.User, c.UserSet = *d.User, true
	}
	return &c, nil
}
