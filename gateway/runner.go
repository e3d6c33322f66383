package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/runtime"
)

// containerInfix marks the containers the gateway starts: NAME-gw-XXXXXX.
const containerInfix = "-gw-"

// RuntimeRunner runs agents as foreground containers of a runtime.Runtime,
// attached through pipes. Each start gets a new container name, and the
// container is removed when the agent exits.
type RuntimeRunner struct {
	Runtime *runtime.Runtime
	// LogDir receives each agent's stderr in NAME.log (appended across
	// restarts).
	LogDir string
	// StopTimeout is how long Stop waits after end of input before it
	// stops the container (SIGTERM, then SIGKILL).
	StopTimeout time.Duration
	// Secrets holds the values of the agents' secrets by name, for their
	// egress proxies (runtime.RunOptions.Secrets).
	Secrets map[string]string
	// EgressHosts maps names for the egress proxies' resolver (tests).
	EgressHosts map[string][]netip.Addr
}

// NewRuntimeRunner returns a runner whose agent logs go to
// DATA/logs/NAME.log of the runtime's data directory.
func NewRuntimeRunner(rt *runtime.Runtime) *RuntimeRunner {
	return &RuntimeRunner{Runtime: rt, LogDir: filepath.Join(rt.DataDir, "logs"), StopTimeout: 5 * time.Second}
}

// LogPath is where the agent's stderr goes.
func (r *RuntimeRunner) LogPath(agent string) string {
	return filepath.Join(r.LogDir, agent+".log")
}

// RemoveStale removes containers this runner left behind for the agents,
// e.g. after the serving process was killed: their stdin is gone, so they
// are useless, and their state would otherwise pile up.
func (r *RuntimeRunner) RemoveStale(agents []string) ([]string, error) {
	list, err := r.Runtime.List()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, c := range list {
		for _, a := range agents {
			if c.Agent == a && strings.HasPrefix(c.Name, containerPrefix(a)) {
				if err := r.Runtime.Remove(c.Name, true); err != nil && !errors.Is(err, runtime.ErrNotFound) {
					errs = append(errs, err)
				} else {
					removed = append(removed, c.Name)
				}
			}
		}
	}
	return removed, errors.Join(errs...)
}

func containerPrefix(agent string) string {
	// Names are at most 64 characters; the suffix takes 11.
	if len(agent) > 48 {
		agent = agent[:48]
	}
	return agent + containerInfix
}

// Start starts the agent's container in the background. A failure to
// create or start it surfaces from Wait, like an exit.
func (r *RuntimeRunner) Start(_ context.Context, p *policy.Plan) (Process, error) {
	if err := os.MkdirAll(r.LogDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent %s log: %w", p.Name, err)
	}
	logf, err := os.OpenFile(r.LogPath(p.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent %s log: %w", p.Name, err)
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := containerPrefix(p.Name) + hex.EncodeToString(suffix)
	fmt.Fprintf(logf, "--- %s clawrun serve: starting container %s\n", time.Now().UTC().Format(time.RFC3339), name)

	// Real pipes, not io.Pipe: the container gets their descriptors, so
	// nothing copies between them. A copy from stdin would keep the run
	// waiting after the agent exited (os/exec waits for its copiers, and
	// stdin ends only at Stop); stdout ends when the agent's end closes.
	inR, inW, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("agent %s: %w", p.Name, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		logf.Close()
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("agent %s: %w", p.Name, err)
	}
	rp := &runtimeProcess{r: r, name: name, stdin: inW, stdout: outR, done: make(chan struct{})}
	go func() {
		var st *runtime.ExitStatus
		code, err := r.Runtime.Run(p, runtime.RunOptions{
			Name: name, Remove: true, Stdin: inR, Stdout: outW, Stderr: logf, KeepSignals: true,
			Secrets: r.Secrets, EgressHosts: r.EgressHosts,
			// One connection log per agent, across restarts.
			NetLog: filepath.Join(r.LogDir, p.Name+".net.log"),
			Exited: func(e *runtime.ExitStatus) { st = e },
		})
		exit := Exit{Code: code}
		switch {
		case err != nil:
			fmt.Fprintf(logf, "--- clawrun serve: container %s: %v\n", name, err)
		case st != nil:
			exit = Exit{Code: st.Code, Signal: st.Signal, OOMKilled: st.OOMKilled}
			// "oom-killed", "killed (SIGKILL)", "exited (3)", as ps shows it.
			fmt.Fprintf(logf, "--- %s clawrun serve: container %s %s (code %d)\n",
				st.At.Format(time.RFC3339), name, st.Text, st.Code)
		default:
			fmt.Fprintf(logf, "--- clawrun serve: container %s exited with code %d\n", name, code)
		}
		inR.Close()
		outW.Close()
		logf.Close()
		rp.exit, rp.err = exit, err
		close(rp.done)
	}()
	return rp, nil
}

type runtimeProcess struct {
	r      *RuntimeRunner
	name   string
	stdin  *os.File
	stdout *os.File
	done   chan struct{}
	exit   Exit
	err    error
	stop   sync.Once
}

func (p *runtimeProcess) Name() string          { return p.name }
func (p *runtimeProcess) Stdin() io.WriteCloser { return p.stdin }
func (p *runtimeProcess) Stdout() io.Reader     { return p.stdout }

func (p *runtimeProcess) Wait() (Exit, error) {
	<-p.done
	return p.exit, p.err
}

// Stop closes the agent's input, gives it StopTimeout to exit, then stops
// the container. The run removes the container once the agent is gone.
func (p *runtimeProcess) Stop() error {
	var err error
	p.stop.Do(func() {
		// Once the agent is gone, so is the last use of its output; a
		// reader still blocked on it (a leftover child holding the other
		// end) returns.
		defer p.stdout.Close()
		p.stdin.Close()
		select {
		case <-p.done:
			return
		case <-time.After(p.r.StopTimeout):
		}
		if e := p.r.Runtime.Stop(p.name, p.r.StopTimeout); e != nil && !errors.Is(e, runtime.ErrNotFound) {
			err = e
		}
		select {
		case <-p.done:
		case <-time.After(p.r.StopTimeout + 10*time.Second):
			if err == nil {
				err = fmt.Errorf("container %s did not stop", p.name)
			}
		}
	})
	return err
}
