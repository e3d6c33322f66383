package seccomp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CustomPrefix marks a profile reference that names a file of OCI
// LinuxSeccomp JSON instead of a built-in profile: "custom:/path/to/file.json".
const CustomPrefix = "custom:"

// Resolve returns the profile a reference names: a built-in profile name (see
// Names), built for opts, or CustomPrefix followed by the path of a custom
// profile, loaded with LoadCustom (opts do not change a custom profile).
func Resolve(ref string, opts Options) (*specs.LinuxSeccomp, error) {
	if path, ok := strings.CutPrefix(ref, CustomPrefix); ok {
		path = strings.TrimSpace(path)
		if path == "" {
			return nil, fmt.Errorf("seccomp profile %q: no file after %q", ref, CustomPrefix)
		}
		return LoadCustom(path)
	}
	return ProfileFor(ref, opts)
}

// maxCustomSize bounds a custom profile file; Docker's whole default profile
// is about 20 KiB.
const maxCustomSize = 4 << 20

// LoadCustom reads a custom profile: OCI runtime-spec LinuxSeccomp JSON, the
// value of linux.seccomp in a config.json. Unknown fields, invalid actions,
// operators, architectures and flags are errors, and so is every syscall name
// libseccomp does not know for the host architecture (the OCI runtime would
// skip such a rule silently). Rules the runc/libseccomp path would not
// enforce as written are errors too: see lintRules. Errors name the file.
func LoadCustom(path string) (*specs.LinuxSeccomp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("custom seccomp profile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCustomSize+1))
	if err != nil {
		return nil, fmt.Errorf("custom seccomp profile %s: %w", path, err)
	}
	if len(data) > maxCustomSize {
		return nil, fmt.Errorf("custom seccomp profile %s: larger than %d bytes", path, maxCustomSize)
	}
	p, err := parseCustom(data)
	if err != nil {
		return nil, fmt.Errorf("custom seccomp profile %s: %w", path, err)
	}
	if err := checkNames(p); err != nil {
		return nil, fmt.Errorf("custom seccomp profile %s: %w", path, err)
	}
	return p, nil
}

// parseCustom decodes and checks everything that needs no libseccomp.
func parseCustom(data []byte) (*specs.LinuxSeccomp, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p specs.LinuxSeccomp
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file: want OCI LinuxSeccomp JSON (defaultAction, architectures, syscalls)")
		}
		if strings.Contains(err.Error(), "unknown field") && (bytes.Contains(data, []byte(`"archMap"`)) || bytes.Contains(data, []byte(`"includes"`))) {
			return nil, fmt.Errorf("%w: this looks like a Docker/moby profile (archMap, includes, excludes); clawrun wants the OCI form, the linux.seccomp value of a config.json (e.g. from `clawrun seccomp show --json default`)", err)
		}
		return nil, fmt.Errorf("not OCI LinuxSeccomp JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := validate(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

// validate checks the structure of a profile: actions, errnos, operators,
// argument indexes, architectures and flags.
func validate(p *specs.LinuxSeccomp) error {
	if p.DefaultAction == "" {
		return errors.New("defaultAction is missing")
	}
	if err := validAction(p.DefaultAction); err != nil {
		return fmt.Errorf("defaultAction: %w", err)
	}
	if p.DefaultErrnoRet != nil && p.DefaultAction != specs.ActErrno && p.DefaultAction != specs.ActTrace {
		return fmt.Errorf("defaultErrnoRet is set but defaultAction is %s; it applies only to SCMP_ACT_ERRNO and SCMP_ACT_TRACE", p.DefaultAction)
	}
	if p.ListenerPath != "" || p.ListenerMetadata != "" {
		return errors.New("listenerPath/listenerMetadata: seccomp notify agents are not supported by clawrun")
	}
	seen := map[specs.Arch]bool{}
	for _, a := range p.Architectures {
		if !slices.Contains(knownArches, a) {
			return fmt.Errorf("architecture %q unknown (known: %s)", a, joinArches(knownArches))
		}
		if seen[a] {
			return fmt.Errorf("architecture %s listed twice", a)
		}
		seen[a] = true
	}
	for _, fl := range p.Flags {
		if !slices.Contains(knownFlags, fl) {
			return fmt.Errorf("flag %q unknown (known: %s)", fl, strings.Join(flagStrings(), ", "))
		}
	}
	for i, sc := range p.Syscalls {
		where := fmt.Sprintf("syscalls[%d]", i)
		if len(sc.Names) > 0 {
			where += " (" + strings.Join(sc.Names, ", ") + ")"
		}
		if len(sc.Names) == 0 {
			return fmt.Errorf("%s: no names", where)
		}
		for _, name := range sc.Names {
			if strings.TrimSpace(name) == "" || name != strings.TrimSpace(name) {
				return fmt.Errorf("%s: syscall name %q is empty or has spaces", where, name)
			}
		}
		if sc.Action == "" {
			return fmt.Errorf("%s: action is missing", where)
		}
		if err := validAction(sc.Action); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if sc.ErrnoRet != nil && sc.Action != specs.ActErrno && sc.Action != specs.ActTrace {
			return fmt.Errorf("%s: errnoRet is set but the action is %s; it applies only to SCMP_ACT_ERRNO and SCMP_ACT_TRACE", where, sc.Action)
		}
		for j, a := range sc.Args {
			if a.Index > 5 {
				return fmt.Errorf("%s: args[%d]: index %d out of range: a syscall has arguments 0 to 5", where, j, a.Index)
			}
			if !slices.Contains(knownOps, a.Op) {
				return fmt.Errorf("%s: args[%d]: operator %q unknown (known: %s)", where, j, a.Op, strings.Join(opStrings(), ", "))
			}
		}
	}
	return lintRules(p)
}

// lintRules refuses rules that the runc/libseccomp path would not enforce the
// way they read:
//   - two conditions on the same argument in one rule: runc then adds each
//     condition as a rule of its own, so the conditions are ORed, not ANDed;
//   - a rule whose action equals the default action while another rule of the
//     same syscall has a different one: runc drops the rule, so it overrides
//     nothing (give it a distinct errno);
//   - an unconditional rule beside conditional rules with another action for
//     the same syscall: libseccomp lets the unconditional rule decide every
//     call, so the conditional ones never apply.
func lintRules(p *specs.LinuxSeccomp) error {
	type rule struct {
		index  int
		action string
		cond   bool
	}
	def := actionKey(p.DefaultAction, p.DefaultErrnoRet)
	bySyscall := map[string][]rule{}
	var order []string
	for i, sc := range p.Syscalls {
		args := map[uint]bool{}
		for _, a := range sc.Args {
			if args[a.Index] {
				return fmt.Errorf("syscalls[%d] (%s): two conditions on arg%d: runc would OR them, not AND them; split the rule or use one masked comparison", i, strings.Join(sc.Names, ", "), a.Index)
			}
			args[a.Index] = true
		}
		for _, name := range sc.Names {
			if _, ok := bySyscall[name]; !ok {
				order = append(order, name)
			}
			bySyscall[name] = append(bySyscall[name], rule{i, actionKey(sc.Action, sc.ErrnoRet), len(sc.Args) > 0})
		}
	}
	for _, name := range order {
		rules := bySyscall[name]
		actions := map[string]bool{}
		for _, r := range rules {
			actions[r.action] = true
		}
		if len(actions) < 2 {
			continue
		}
		for _, r := range rules {
			if r.cond && r.action == def {
				return fmt.Errorf("syscalls[%d] (%s): its action %s equals the default action, so runc drops it and it cannot override the other %s rules; give it a distinct errnoRet", r.index, name, r.action, name)
			}
			if !r.cond {
				return fmt.Errorf("syscalls[%d] (%s): an unconditional %s rule beside %s rules with other actions decides every call (libseccomp), so the conditional ones never apply", r.index, name, r.action, name)
			}
		}
	}
	return nil
}

// actionKey is an action as libseccomp compares them: errno included.
func actionKey(a specs.LinuxSeccompAction, errnoRet *uint) string {
	return describeAction(a, errnoRet)
}

func validAction(a specs.LinuxSeccompAction) error {
	switch a {
	case specs.ActAllow, specs.ActErrno, specs.ActKill, specs.ActKillThread, specs.ActKillProcess,
		specs.ActTrap, specs.ActTrace, specs.ActLog:
		return nil
	case specs.ActNotify:
		return fmt.Errorf("action %s is not supported by clawrun (no seccomp notify agent)", a)
	}
	return fmt.Errorf("action %q unknown (known: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_LOG, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL, SCMP_ACT_TRAP, SCMP_ACT_TRACE)", a)
}

var knownArches = []specs.Arch{
	specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
	specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL, specs.ArchMIPSEL64,
	specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64, specs.ArchPPC64LE, specs.ArchS390,
	specs.ArchS390X, specs.ArchPARISC, specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64,
}

var knownFlags = []specs.LinuxSeccompFlag{
	specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagWaitKillableRecv,
	"SECCOMP_FILTER_FLAG_TSYNC",
}

var knownOps = []specs.LinuxSeccompOperator{
	specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
	specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
}

func joinArches(arches []specs.Arch) string {
	s := make([]string, len(arches))
	for i, a := range arches {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func flagStrings() []string {
	s := make([]string, len(knownFlags))
	for i, f := range knownFlags {
		s[i] = string(f)
	}
	return s
}

func opStrings() []string {
	s := make([]string, len(knownOps))
	for i, o := range knownOps {
		s[i] = string(o)
	}
	return s
}
