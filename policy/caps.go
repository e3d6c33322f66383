package policy

import (
	"fmt"
	"slices"
	"strings"
)

// knownCapabilities are the Linux capabilities (capability(7)), in kernel
// order. Names are checked here so a typo fails at load time instead of
// being ignored with a warning by the OCI runtime.
var knownCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
	"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
	"CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// PrivilegedCapabilities may be granted only when the allowlist lists them:
// each one either undoes the sandbox (mounts, ptrace, modules, raw devices,
// BPF, network configuration, the "shocker" open_by_handle_at) or reaches
// state shared with the host (clock, kernel log, reboot, audit, LSMs).
var PrivilegedCapabilities = []string{
	"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_NET_ADMIN",
	"CAP_SYS_RAWIO", "CAP_DAC_READ_SEARCH", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_BOOT",
	"CAP_SYS_TIME", "CAP_SYSLOG", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_AUDIT_CONTROL",
	"CAP_LINUX_IMMUTABLE",
}

// capName normalizes a capability name: case-insensitive, CAP_ optional
// ("net_bind_service" is CAP_NET_BIND_SERVICE).
func capName(s string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if slices.Contains(knownCapabilities, n) {
		return n, nil
	}
	msg := fmt.Sprintf("unknown capability %q", s)
	lower := make([]string, len(knownCapabilities))
	for i, k := range knownCapabilities {
		lower[i] = strings.ToLower(k)
	}
	if c := closest(n, lower); c != "" {
		msg += fmt.Sprintf(": did you mean %s?", strings.ToUpper(c))
	} else {
		msg += ": see capabilities(7) for the names, e.g. CAP_NET_BIND_SERVICE"
	}
	return "", fmt.Errorf("%s", msg)
}

// checkCapability refuses a privileged capability the allowlist does not
// list.
func checkCapability(c string, a *Allowlist) error {
	if !slices.Contains(PrivilegedCapabilities, c) || slices.Contains(a.Capabilities, c) {
		return nil
	}
	where := "the allowlist " + a.Path
	if a.Default {
		where = "the default allowlist"
	}
	return fmt.Errorf("%s is privileged and %s does not permit it: drop it, or list it under capabilities: in %s", c, where, a.where())
}
