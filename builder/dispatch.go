package builder

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// dispatch applies one instruction to the stage: its meaning lives here, one case each.
func (bd *build) dispatch(ctx context.Context, st *stageState, cmd instructions.Command, label string) error {
	if err := bd.expandCommand(st, cmd); err != nil {
		return err
	}
	cfg := &st.img.Config
	switch c := cmd.(type) {
	case *instructions.RunCommand:
		return bd.run(ctx, st, c, label)
	case *instructions.CopyCommand, *instructions.AddCommand:
		return bd.copy(ctx, st, newCopyCmd(c), label)
	case *instructions.WorkdirCommand:
		return bd.workdir(ctx, st, c, label)
	case *instructions.EnvCommand:
		msg := "ENV"
		for _, kv := range c.Env {
			cfg.Env = env(cfg.Env).with(kv.Key, kv.Value)
			st.runEnv = st.runEnv.with(kv.Key, kv.Value)
			msg += " " + kv.Key + "=" + kv.Value
		}
		return bd.configStep(st, label, msg)
	case *instructions.ArgCommand:
		return bd.arg(st, c, label)
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		msg := "LABEL"
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
			msg += " " + kv.Key + "=" + kv.Value
		}
		return bd.configStep(st, label, msg)
	case *instructions.UserCommand:
		cfg.User = c.User
		return bd.configStep(st, label, "USER "+c.User)
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			words, err := bd.lex().ProcessWords(p, st.runEnv)
			if err != nil {
				return err
			}
			for _, w := range words {
				ps, err := parsePorts(w)
				if err != nil {
					return err
				}
				ports = append(ports, ps...)
			}
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
		return bd.configStep(st, label, fmt.Sprintf("EXPOSE %v", ports))
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return fmt.Errorf("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
		return bd.configStep(st, label, fmt.Sprintf("VOLUME %v", c.Volumes))
	case *instructions.CmdCommand:
		args := c.CmdLine
		if c.PrependShell {
			args = withShell(st, args)
		}
		cfg.Cmd = args
		cfg.ArgsEscaped = true //nolint:staticcheck // Docker's images still carry it
		return bd.configStep(st, label, fmt.Sprintf("CMD %q", args))
	case *instructions.EntrypointCommand:
		args := c.CmdLine
		if c.PrependShell {
			args = withShell(st, args)
		}
		cfg.Entrypoint = args
		if !st.cmdSet {
			cfg.Cmd = nil // an ENTRYPOINT resets the base image's CMD, as Docker does
		}
		return bd.configStep(st, label, fmt.Sprintf("ENTRYPOINT %q", args))
	case *instructions.ShellCommand:
		cfg.Shell = append([]string(nil), c.Shell...)
		return bd.configStep(st, label, fmt.Sprintf("SHELL %v", c.Shell))
	case *instructions.StopSignalCommand:
		if err := checkSignal(c.Signal); err != nil {
			return err
		}
		cfg.StopSignal = c.Signal
		return bd.configStep(st, label, fmt.Sprintf("STOPSIGNAL %v", c.Signal))
	case *instructions.MaintainerCommand:
		st.img.Author = c.Maintainer
		return bd.configStep(st, label, "MAINTAINER "+c.Maintainer)
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
		return nil
	case *instructions.HealthCheckCommand:
		cfg.Healthcheck = &dockerspec.HealthcheckConfig{
			Test: c.Health.Test, Interval: c.Health.Interval, Timeout: c.Health.Timeout,
			StartPeriod: c.Health.StartPeriod, StartInterval: c.Health.StartInterval, Retries: c.Health.Retries,
		}
		return bd.configStep(st, label, fmt.Sprintf("HEALTHCHECK %+v", *cfg.Healthcheck))
	default:
		return fmt.Errorf("instruction %s is not supported", strings.ToUpper(cmd.Name()))
	}
}

// configStep records a config-only instruction: a history entry, no layer.
func (bd *build) configStep(st *stageState, label, createdBy string) error {
	if strings.HasPrefix(createdBy, "CMD ") {
		st.cmdSet = true
	}
	st.history(createdBy, true)
	return nil
}

// arg declares ARGs in the stage: a --build-arg value wins, then the default, then a global ARG
// of the same name declared without a default here.
func (bd *build) arg(st *stageState, c *instructions.ArgCommand, label string) error {
	var parts []string
	for _, kv := range c.Args {
		var v *string
		if o, ok := bd.opts.BuildArgs[kv.Key]; ok {
			v = &o
		} else if kv.Value != nil {
			s, _, err := bd.lex().ProcessWord(*kv.Value, st.runEnv)
			if err != nil {
				return err
			}
			v = &s
		} else if g, ok := bd.global.Get(kv.Key); ok {
			v = &g
		}
		st.args.set(kv.Key, v)
		st.argList = append(st.argList, instructions.KeyValuePairOptional{Key: kv.Key, Value: v})
		part := kv.Key
		if v != nil {
			st.runEnv = st.runEnv.with(kv.Key, *v)
			part += "=" + *v
		}
		parts = append(parts, part)
	}
	return bd.configStep(st, label, "ARG "+strings.Join(parts, " "))
}

// withShell wraps a shell-form command line in the stage's SHELL (default /bin/sh -c).
func withShell(st *stageState, args []string) []string {
	sh := []string{"/bin/sh", "-c"}
	if len(st.img.Config.Shell) > 0 {
		sh = append([]string(nil), st.img.Config.Shell...)
	}
	return append(sh, strings.Join(args, " "))
}

// parsePorts turns an EXPOSE word (80, 80/udp, 8000-8002/tcp) into port/proto keys.
func parsePorts(w string) ([]string, error) {
	port, proto, _ := strings.Cut(w, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("invalid proto: %s", proto)
	}
	lo, hi, isRange := strings.Cut(port, "-")
	start, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("invalid containerPort: %s", port)
	}
	end := start
	if isRange {
		if end, err = strconv.ParseUint(hi, 10, 16); err != nil || end < start {
			return nil, fmt.Errorf("invalid range specified for containerPort: %s", port)
		}
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	sort.Strings(out)
	return out, nil
}

// checkSignal accepts what Docker accepts for STOPSIGNAL: a number or a signal name.
func checkSignal(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return fmt.Errorf("invalid signal: %s", s)
		}
		return nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if unix.SignalNum("SIG"+name) == 0 && !strings.HasPrefix(name, "RTMIN") && !strings.HasPrefix(name, "RTMAX") {
		return fmt.Errorf("invalid signal: %s", s)
	}
	return nil
}
