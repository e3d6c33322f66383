package policy

// Option adjusts how Load and AdHoc check an agent against the host: which
// allowlist applies, and which host files no read-write grant may reach.
type Option func(*options)

type options struct {
	allowlist     *Allowlist
	allowlistFile string
	executable    string
	clawrunDirs   []string
	dataDir       string
}

// WithAllowlist checks grants against a, instead of reading the allowlist
// file. Tests and long-running callers that loaded it once use this.
func WithAllowlist(a *Allowlist) Option {
	return func(o *options) { o.allowlist = a }
}

// WithAllowlistFile reads the allowlist from path, which must exist, instead
// of $CLAWRUN_ALLOWLIST or the default location (see AllowlistPath).
func WithAllowlistFile(path string) Option {
	return func(o *options) { o.allowlistFile = path }
}

// WithExecutable names the clawrun binary (os.Executable) so that no
// read-write grant can reach it: an agent that can replace the binary that
// enforces its sandbox has no sandbox.
func WithExecutable(path string) Option {
	return func(o *options) { o.executable = path }
}

// WithClawrunDirs adds clawrun's own state and data directories, as chosen
// with --root and --data, to the blocked paths. The default locations are
// always blocked.
func WithClawrunDirs(dirs ...string) Option {
	return func(o *options) { o.clawrunDirs = append(o.clawrunDirs, dirs...) }
}

func collectOptions(opts []Option) *options {
	o := &options{}
	for _, f := range opts {
		if f != nil {
			f(o)
		}
	}
	return o
}

// Rules name the policy that refused something; they end each message as
// "(policy: RULE)" so a user knows which setting to change.
const (
	RuleAllowlist     = "allowlist"
	RuleBlocked       = "blocked paths"
	RuleSelfEdit      = "self-edit protection"
	RuleHostPath      = "host paths"
	RuleContainerPath = "container paths"
	RuleCapabilities  = "capabilities"
	RuleSeccomp       = "seccomp"
	RuleSlack         = "slack routing"
	RuleAllowlistFile = "allowlist file"
)
