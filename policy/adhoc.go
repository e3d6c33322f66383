package policy

import (
	"fmt"
	"maps"
	"os"
	"strings"
)

// AdHocOptions describe a container run from command-line flags instead of
// an agent file (`clawrun run --rootfs ... -- CMD` or `--image REF`).
type AdHocOptions struct {
	Name   string
	Rootfs string
	// Image is a reference (registry, oci-layout:, docker-archive:) run
	// instead of Rootfs; its config applies as WithImage says, Command
	// replacing its Cmd and Entrypoint (if EntrypointSet) its Entrypoint.
	Image         string
	Entrypoint    []string
	EntrypointSet bool
	Command       []string
	Mounts        []string // "SRC:DST[:ro|rw]", SRC relative to the current directory
	Memory        string   // size, e.g. 256M; empty for no limit
	CPUs          float64  // 0 for no limit
	Pids          int64    // 0 for no limit
	Enforce       string   // limits.enforce: "", strict or best-effort
	Env           []string // KEY=VAL
	Workdir       string   // default /
	User          string   // "uid" or "uid:gid"; empty leaves UserSet false
}

// AdHoc validates o with the same rules as an agent file, including the
// host allowlist and blocked paths (with the current directory in place of
// the agent file's directory), and returns its Plan. Every problem is
// reported, each a *FieldError naming the flag.
func AdHoc(o AdHocOptions, opts ...Option) (*Plan, error) {
	var c collector
	base, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("ad-hoc run: current directory: %w", err)
	}
	ck, err := newChecker(collectOptions(opts), base, "")
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		c.add(0, "--name", "missing: give the container a name")
	} else if err := ValidName(o.Name); err != nil {
		c.add(0, "--name", "%v", err)
	}
	p := newPlan(o.Name)

	switch {
	case o.Rootfs != "" && o.Image != "":
		c.add(0, "--image", "--rootfs and --image are both given: run from a directory or from an image, not both")
	case o.Image != "":
		r, is, err := resolveImage(base, o.Image, ck)
		switch {
		case err != nil:
			c.add(0, "--image", "%v", err)
		case is != nil:
			c.addRule(0, "--image", is.rule, "image %s", is.msg)
		default:
			p.Image = r
		}
	case o.EntrypointSet:
		c.add(0, "--entrypoint", "is for --image runs: with --rootfs, give the whole command after --")
	}
	if o.Image != "" {
		// The command may come from the image.
	} else if o.Rootfs == "" {
		c.add(0, "--rootfs", "missing: give the directory holding the root filesystem, or --image REF")
	} else if err := checkPathChars(o.Rootfs); err != nil {
		c.addRule(0, "--rootfs", RuleHostPath, "%q %v", o.Rootfs, err)
	} else if r, err := resolveRootfs(base, o.Rootfs); err != nil {
		c.addRule(0, "--rootfs", RuleHostPath, "%v", err)
	} else if is := ck.rootfs(o.Rootfs, r); is != nil {
		c.addRule(0, "--rootfs", is.rule, "%s", is.msg)
	} else {
		p.Rootfs = r
	}

	if o.Image == "" && (len(o.Command) == 0 || o.Command[0] == "") {
		c.add(0, "command", "missing: give the program to run after --, e.g. clawrun run --rootfs ./rootfs -- /agent")
	}
	for i, a := range o.Command {
		if err := checkArg(a); err != nil {
			c.add(0, fmt.Sprintf("command[%d]", i), "%v", err)
		}
	}
	for i, a := range o.Entrypoint {
		if err := checkArg(a); err != nil {
			c.add(0, fmt.Sprintf("--entrypoint[%d]", i), "%v", err)
		}
	}
	p.Command = append([]string(nil), o.Command...)
	if o.Image != "" {
		p.Command = nil // WithImage builds it from the image's config
		if len(o.Command) > 0 {
			p.set.cmd = append([]string(nil), o.Command...)
		}
		if o.EntrypointSet {
			p.set.entrypoint, p.set.entrySet = append([]string{}, o.Entrypoint...), true
		}
	}

	seen := map[string]string{}
	for _, m := range o.Mounts {
		g, ok := adHocMount(&c, ck, base, m)
		if !ok {
			continue
		}
		if prev, dup := seen[g.Path]; dup {
			c.addRule(0, "--mount", RuleContainerPath, "%q: %s is already mounted by %q: each container path may be granted once", m, g.Path, prev)
			continue
		}
		hidden := false
		for _, e := range p.Grants {
			if within(e.Path, g.Path) {
				c.addRule(0, "--mount", RuleContainerPath, "%q: %s would be mounted over %s (%q) and hide it: give the --mount of %s first", m, g.Path, e.Path, seen[e.Path], g.Path)
				hidden = true
			}
		}
		if hidden {
			continue
		}
		seen[g.Path] = m
		p.Grants = append(p.Grants, g)
	}

	if o.Memory != "" {
		if n, err := parseMemory(o.Memory); err != nil {
			c.add(0, "--memory", "%v", err)
		} else {
			p.Limits.MemoryBytes = n
		}
	}
	if o.CPUs != 0 {
		if err := checkCPUs(o.CPUs); err != nil {
			c.add(0, "--cpus", "%v", err)
		} else if msg := ck.allow.cpusAboveTotal(o.CPUs); msg != "" {
			c.addRule(0, "--cpus", RuleAllowlist, "%s", msg) // as an agent file's cpus
		} else {
			p.Limits.CPUs = o.CPUs
		}
	}
	if o.Pids != 0 {
		if err := checkPids(o.Pids); err != nil {
			c.add(0, "--pids", "%v", err)
		} else {
			p.Limits.Pids = o.Pids
		}
	}

	if o.Enforce != "" {
		if e, err := parseEnforce(o.Enforce); err != nil {
			c.add(0, "--enforce", "%v", err)
		} else {
			p.Limits.Enforce = e
		}
	}

	vars := map[string]string{}
	for _, kv := range o.Env {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			c.add(0, "--env", "%q is not KEY=VALUE: write %s=value (use %s= for an empty value)", kv, kv, kv)
		case checkEnvKey(k) != nil:
			c.add(0, "--env", "%v", checkEnvKey(k))
		case checkEnvValue(k, v) != nil:
			c.add(0, "--env", "%v", checkEnvValue(k, v))
		default:
			if _, dup := vars[k]; dup {
				c.add(0, "--env", "%s is given twice: keep one", k)
				continue
			}
			vars[k] = v
		}
	}
	if o.Image != "" {
		// What the flags set, before buildEnv adds its defaults: only
		// these override the image's variables.
		p.set.env = maps.Clone(vars)
	}
	p.Env = buildEnv(vars)

	if o.Workdir != "" {
		if w, err := parseWorkdir(o.Workdir); err != nil {
			c.add(0, "--workdir", "%v", err)
		} else {
			p.Workdir, p.set.workdir = w, o.Image != ""
		}
	}
	if o.User != "" {
		if u, err := parseUser(o.User); err != nil {
			c.add(0, "--user", "%v", err)
		} else {
			p.User, p.UserSet = u, true
		}
	}

	if err := c.err(); err != nil {
		return nil, err
	}
	ck.allow.applyTotal(p)
	return p, nil
}

// adHocMount parses and checks one --mount "SRC:DST[:ro|rw]", reporting
// every problem.
func adHocMount(c *collector, ck *checker, base, m string) (Grant, bool) {
	parts := strings.Split(m, ":")
	if len(parts) < 2 || len(parts) > 3 {
		c.add(0, "--mount", "%q is not SRC:DST[:ro|rw]: give the host path and the container path, e.g. --mount ./data:/data:ro", m)
		return Grant{}, false
	}
	mode := ""
	if len(parts) == 3 {
		mode = parts[2]
	}
	g, issues := ck.grant(base, parts[0], parts[1], mode)
	if len(issues) == 0 && g.Mode == ReadWrite {
		issues = ck.selfEdit(g.Host)
	}
	for _, is := range issues {
		switch is.part {
		case "host":
			c.addRule(0, "--mount", is.rule, "%q: source %s", m, is.msg)
		case "path":
			c.addRule(0, "--mount", is.rule, "%q: destination %s", m, is.msg)
		default:
			c.addRule(0, "--mount", is.rule, "%q: %s", m, is.msg)
		}
	}
	return g, len(issues) == 0
}
