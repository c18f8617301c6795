package builder

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	kilnrt "kiln/runtime"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	digest "github.com/opencontainers/go-digest"
)

// run is RUN: the command runs in the sandbox over the stage's snapshot; what it changes is the
// step's layer. Heredocs, --mount, --network and --security are read as BuildKit's dispatchRun
// reads them.
func (bd *build) run(ctx context.Context, st *stageState, c *instructions.RunCommand, label string) error {
	for _, f := range c.FlagsUsed {
		switch f {
		case "mount", "network", "security":
		default:
			return fmt.Errorf("RUN --%s is not supported", f)
		}
	}
	hd, err := parseHeredocRun(c)
	if err != nil {
		return err
	}
	label += hd.summary
	args := hd.args
	if c.PrependShell {
		args = withShell(st, args)
	}
	if len(args) == 0 {
		return fmt.Errorf("RUN has no command")
	}
	network := instructions.GetNetwork(c)
	if network == instructions.NetworkDefault {
		network = bd.opts.Network
	}
	security := bd.opts.Security
	insecure := instructions.GetSecurity(c) == instructions.SecurityInsecure
	if insecure {
		if !bd.opts.AllowInsecure {
			return fmt.Errorf("security.insecure is not allowed")
		}
		security.Insecure = true
	}
	mounts, err := bd.runMounts(ctx, st, c)
	if err != nil {
		return err
	}
	cfg := st.img.Config
	runEnv := []string(st.runEnv)
	// As in BuildKit, the first ssh mount is the step's agent unless the step sets its own.
	for _, m := range mounts {
		if m.sshTarget != "" {
			if _, ok := st.runEnv.Get("SSH_AUTH_SOCK"); !ok {
				runEnv = append(slices.Clone(runEnv), "SSH_AUTH_SOCK="+m.sshTarget)
			}
			break
		}
	}
	createdBy := "RUN " + runCommandString(args, st.argList, st.runEnv) + " # buildkit"
	mountKeys := make([]mountKey, len(mounts))
	for i, m := range mounts {
		mountKeys[i] = m.key
	}
	key := stepKey("run", st.chain, args, runEnv, cfg.WorkingDir, cfg.User, network,
		runKeyExtra{Mounts: mountKeys, Script: hd.script, Insecure: insecure})
	return bd.layerStep(ctx, st, layerStep{
		label: label, createdBy: createdBy, key: key,
		work: func(ctx context.Context, root string, out io.Writer) (err error) {
			var ms mountSet
			defer func() {
				if rerr := ms.release(); rerr != nil {
					err = errors.Join(err, fmt.Errorf("release RUN mounts: %w", rerr))
				}
			}()
			if hd.script != nil {
				m, remove, err := hd.script.mount(bd.b.Store.TmpDir())
				if err != nil {
					return err
				}
				ms.onRelease(remove)
				ms.add(m)
			}
			for _, m := range mounts {
				if err := m.setup(ctx, &ms); err != nil {
					return err
				}
			}
			env := runEnv
			if len(ms.env) > 0 {
				env = envWith(runEnv, ms.env)
			}
			// Proxy build args reach the process but not the cache key, the history or the image,
			// as BuildKit passes them.
			if proxies := bd.proxyEnv(); len(proxies) > 0 {
				env = envWith(env, proxies)
			}
			err = kilnrt.Run(ctx, kilnrt.Spec{
				ID:     stepID(key),
				Root:   root,
				Args:   args,
				Env:    env,
				Cwd:    cfg.WorkingDir,
				User:   cfg.User,
				Stdout: out,
				Stderr: out,

				Network:  network,
				Mounts:   ms.sorted(),
				Limits:   bd.opts.Limits,
				Security: security,
			})
			if err != nil {
				return fmt.Errorf("process %q did not complete successfully: %w", strings.Join(args, " "), err)
			}
			return nil
		},
	})
}

// runKeyExtra is what a RUN's key holds beyond its command and environment.
type runKeyExtra struct {
	Mounts   []mountKey     `json:"mounts,omitempty"`
	Script   *heredocScript `json:"script,omitempty"`
	Insecure bool           `json:"insecure,omitempty"`
}

// envWith is env with the KEY=VALUE pairs of add set, replacing variables of the same name.
func envWith(env, add []string) []string {
	out := slices.Clone(env)
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		out = slices.DeleteFunc(out, func(e string) bool { ek, _, _ := strings.Cut(e, "="); return ek == k })
		out = append(out, kv)
	}
	return out
}

// runCommandString is the RUN history text as BuildKit writes it: "|N K=V ... cmd" when build
// args are in scope, so the history shows what the command ran with.
func runCommandString(args []string, buildArgs []instructions.KeyValuePairOptional, e shell.EnvGetter) string {
	var parts []string
	idx := map[string]int{}
	for _, a := range buildArgs {
		v, ok := e.Get(a.Key)
		if !ok {
			v = a.ValueString()
		}
		if i, ok := idx[a.Key]; ok {
			parts[i] = a.Key + "=" + v
			continue
		}
		idx[a.Key] = len(parts)
		parts = append(parts, a.Key+"="+v)
	}
	if len(parts) > 0 {
		parts = append([]string{fmt.Sprintf("|%d", len(parts))}, parts...)
	}
	return strings.Join(append(parts, args...), " ")
}

// stepID names a RUN's sandbox (and cgroup): the step's key, and a part unique to this run, so
// that two builds running the same step at once never share a cgroup.
func stepID(key digest.Digest) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%x", key.Encoded()[:12], os.Getpid(), b)
}
