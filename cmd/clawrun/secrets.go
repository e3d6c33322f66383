package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/clawrun/clawrun/internal/secretfile"
	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/runtime"
)

// envEgressHosts names an /etc/hosts-style file whose names the egress
// proxy resolves from it instead of DNS. It exists for tests (a loopback
// server reached by name); clawrun reads it only when it is set.
const envEgressHosts = "CLAWRUN_EGRESS_HOSTS_FILE"

// secretValues reads the values of the plans' secrets from the environment
// and the --secrets file, and refuses a plan whose secret has none: the
// message names the secrets, never a value.
func secretValues(file string, plans ...*policy.Plan) (map[string]string, error) {
	var names []string
	for _, p := range plans {
		for _, s := range p.Secrets {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		if file != "" {
			// Still check the file: a mistake should not wait for the
			// first agent with a secret.
			if _, err := secretfile.Read(file, "API_KEY=…"); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	vals, err := secretfile.Lookup(file, names)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		if err := runtimeSecretsCheck(p, vals); err != nil {
			return nil, err
		}
	}
	return vals, nil
}

func runtimeSecretsCheck(p *policy.Plan, vals map[string]string) error {
	if m := runtime.MissingSecrets(p, vals); len(m) > 0 {
		return fmt.Errorf("agent %s: no value for secret %s: set it in the environment of clawrun or in a --secrets file (KEY=VALUE lines, mode 0600)", p.Name, strings.Join(m, ", "))
	}
	return nil
}

// egressHosts reads envEgressHosts when it is set.
func egressHosts() (map[string][]netip.Addr, error) {
	path := os.Getenv(envEgressHosts)
	if path == "" {
		return nil, nil
	}
	h, err := runtime.ReadHostsFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envEgressHosts, err)
	}
	return h, nil
}
