package parser

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/util/suggest"
	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"

	bkparser "github.com/moby/buildkit/frontend/dockerfile/parser"
)

// dispatchStages walks every stage's instructions (only those the target needs when a target
// is given), as BuildKit's dispatch does, running the rules it checks on the way.
func (w *walker) dispatchStages(reach map[*checkStage]struct{}) error {
	for _, d := range w.all.states {
		if !w.allStages {
			if _, ok := reach[d]; !ok || d.dispatched {
				continue
			}
		}
		d.init()
		d.dispatched = true
		if d.platform == nil {
			p := w.target
			d.platform = &p
		}
		if _, ok := shell.EnvsFromSlice(d.img.Config.Env).Get("PATH"); !ok && d.platform.OS != "windows" {
			d.img.Config.Env = append(d.img.Config.Env, "PATH="+defaultPathEnv)
		}
		for _, kv := range d.img.Config.Env {
			k, v := splitEnv(kv)
			d.env.set(k, v)
		}
		for _, c := range d.commands {
			if err := w.dispatch(d, c); err != nil {
				return bkparser.WithLocation(err, c.Location())
			}
		}
	}
	return nil
}

func (w *walker) dispatch(d *checkStage, c checkCmd) error {
	lint := w.lint.WithMergedConfigFromComments(c.Comments())
	expand := func(lex *shell.Lex) instructions.SingleWordExpander {
		return func(word string) (string, error) {
			env := d.env.clone()
			out, unmatched, err := lex.ProcessWord(word, env)
			w.reportUnmatchedVariables(c.Command, d.buildArgs, env, unmatched, lint)
			return out, err
		}
	}
	if ex, ok := c.Command.(instructions.SupportsSingleWordExpansion); ok {
		if _, isArg := c.Command.(*instructions.ArgCommand); !isArg {
			if err := ex.Expand(expand(w.shlex)); err != nil {
				return err
			}
		}
	}
	if ex, ok := c.Command.(instructions.SupportsSingleWordExpansionRaw); ok {
		lex := shell.NewLex('\\')
		lex.SkipProcessQuotes = true
		if err := ex.ExpandRaw(expand(lex)); err != nil {
			return err
		}
	}

	switch cmd := c.Command.(type) {
	case *instructions.EnvCommand:
		for _, e := range cmd.Env {
			if e.NoDelim {
				lint.Run(&linter.RuleLegacyKeyValueFormat, cmd.Location(), linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
			}
			validateNoSecretKey("ENV", e.Key, cmd.Location(), lint)
			d.env.set(e.Key, e.Value)
			d.img.Config.Env = addEnv(d.img.Config.Env, e.Key, e.Value)
		}
	case *instructions.LabelCommand:
		for _, l := range cmd.Labels {
			if l.NoDelim {
				lint.Run(&linter.RuleLegacyKeyValueFormat, cmd.Location(), linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
			}
		}
	case *instructions.WorkdirCommand:
		if !d.workdirSet && !filepath.IsAbs(cmd.Path) {
			lint.Run(&linter.RuleWorkdirRelativePath, cmd.Location(), linter.RuleWorkdirRelativePath.Format(cmd.Path))
		}
		d.workdirSet = true
	case *instructions.CmdCommand:
		validateUsedOnce(cmd, &d.cmd, lint)
		if cmd.PrependShell && len(d.img.Config.Shell) == 0 {
			lint.Run(&linter.RuleJSONArgsRecommended, cmd.Location(), linter.RuleJSONArgsRecommended.Format(cmd.Name()))
		}
	case *instructions.EntrypointCommand:
		validateUsedOnce(cmd, &d.entrypoint, lint)
		if cmd.PrependShell && len(d.img.Config.Shell) == 0 {
			lint.Run(&linter.RuleJSONArgsRecommended, cmd.Location(), linter.RuleJSONArgsRecommended.Format(cmd.Name()))
		}
	case *instructions.HealthCheckCommand:
		validateUsedOnce(cmd, &d.healthcheck, lint)
	case *instructions.ShellCommand:
		d.img.Config.Shell = slices.Clone(cmd.Shell)
	case *instructions.ExposeCommand:
		return w.dispatchExpose(d, cmd, lint)
	case *instructions.VolumeCommand:
		for _, v := range cmd.Volumes {
			if v == "" {
				return errors.New("VOLUME specified can not be an empty string")
			}
		}
	case *instructions.StopSignalCommand:
		return checkSignal(cmd.Signal)
	case *instructions.ArgCommand:
		return w.dispatchArg(d, cmd, lint)
	case *instructions.RunCommand:
		for i, m := range instructions.GetMounts(cmd) {
			from := m.From
			if from == "" && m.Type == instructions.MountTypeCache {
				// A cache mount without from= reads from "scratch", which a stage of that name
				// shadows, as in BuildKit.
				from = scratchImage
			}
			if from != "" && i < len(c.sources) && !c.sources[i].dispatched {
				return fmt.Errorf("cannot mount from stage %q to %q, stage needs to be defined before current command", from, m.Target)
			}
		}
	case *instructions.AddCommand:
		return w.dispatchCopy(copyCheck{
			add: true, params: cmd.SourcesAndDest, chown: cmd.Chown, chmod: cmd.Chmod, link: cmd.Link,
			checksum: cmd.Checksum, loc: cmd.Location(), ignore: w.ignore, lint: lint,
		})
	case *instructions.CopyCommand:
		ignore := w.ignore
		if len(c.sources) != 0 {
			if src := c.sources[0]; !src.dispatched {
				return fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage %q", cmd.From, d.name)
			}
			ignore = nil
		}
		return w.dispatchCopy(copyCheck{
			params: cmd.SourcesAndDest, chown: cmd.Chown, chmod: cmd.Chmod, link: cmd.Link,
			loc: cmd.Location(), ignore: ignore, lint: lint,
		})
	}
	return nil
}

func addEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if key, _ := splitEnv(kv); shell.EqualEnvKeys(key, k) {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// reportUnmatchedVariables is UndefinedVar: a variable used but neither in the environment nor
// declared by an ARG of the stage.
func (w *walker) reportUnmatchedVariables(c instructions.Command, buildArgs []instructions.KeyValuePairOptional, env shell.EnvGetter, unmatched map[string]struct{}, lint *linter.Linter) {
	for _, a := range buildArgs {
		delete(unmatched, a.Key)
	}
	if len(unmatched) == 0 {
		return
	}
	options := env.Keys()
	for _, v := range sortedKeys(unmatched) {
		if _, ok := nonEnvArgs[v]; ok {
			continue
		}
		match, _ := suggest.Search(v, options, true)
		lint.Run(&linter.RuleUndefinedVar, c.Location(), linter.RuleUndefinedVar.Format(v, match))
	}
}

func validateUsedOnce(c instructions.Command, u *usedOnce, lint *linter.Linter) {
	if u.set {
		// The earlier one is reported: it is the one that has no effect.
		lint.Run(&linter.RuleMultipleInstructionsDisallowed, u.loc, linter.RuleMultipleInstructionsDisallowed.Format(c.Name()))
	}
	u.loc, u.set = c.Location(), true
}

func (w *walker) dispatchArg(d *checkStage, c *instructions.ArgCommand, lint *linter.Linter) error {
	for _, arg := range c.Args {
		validateNoSecretKey("ARG", arg.Key, c.Location(), lint)
		bv, hasValue := w.buildArgs[arg.Key]
		hasDefault := arg.Value != nil
		if !hasDefault && !hasValue {
			if v, ok := w.global.Get(arg.Key); ok {
				arg.Value = &v
			}
		}
		if hasValue {
			arg.Value = &bv
		} else if hasDefault {
			env := d.env.clone()
			v, unmatched, err := w.shlex.ProcessWord(*arg.Value, env)
			w.reportUnmatchedVariables(c, d.buildArgs, env, unmatched, lint)
			if err != nil {
				return err
			}
			arg.Value = &v
		}
		if arg.Value != nil {
			if _, ok := nonEnvArgs[arg.Key]; !ok {
				d.env.set(arg.Key, *arg.Value)
			}
		}
		d.buildArgs = append(d.buildArgs, arg)
	}
	return nil
}

type copyCheck struct {
	add                    bool
	params                 instructions.SourcesAndDest
	chown, chmod, checksum string
	link                   bool
	loc                    []bkparser.Range
	ignore                 *patternmatcher.PatternMatcher
	lint                   *linter.Linter
}

func isGitSource(src string) bool {
	for _, p := range []string{"git@", "git://", "ssh://"} {
		if strings.HasPrefix(src, p) {
			return true
		}
	}
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		u, _, _ := strings.Cut(src, "#")
		return strings.HasSuffix(u, ".git")
	}
	return false
}

func isHTTPSource(src string) bool {
	return (strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")) && !isGitSource(src)
}

// chownByName tells whether --chown names a user or group rather than giving numeric ids.
func chownByName(chown string) bool {
	user, group, _ := strings.Cut(chown, ":")
	for _, s := range []string{user, group} {
		if s == "" {
			continue
		}
		if _, err := strconv.ParseUint(s, 10, 32); err != nil {
			return true
		}
	}
	return false
}

func (w *walker) dispatchCopy(c copyCheck) error {
	if c.chown != "" && c.link && chownByName(c.chown) {
		return fmt.Errorf("--chown=%s: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead", c.chown)
	}
	if c.chmod != "" {
		p, err := strconv.ParseUint(c.chmod, 8, 32)
		if (err == nil && p > 0o7777) || (err != nil && isNumeric(c.chmod)) {
			return fmt.Errorf("invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", c.chmod)
		}
	}
	if c.checksum != "" {
		if !c.add {
			return errors.New("checksum can't be specified for COPY")
		}
		if len(c.params.SourcePaths) != 1 {
			return errors.New("checksum can't be specified for multiple sources")
		}
		if !isHTTPSource(c.params.SourcePaths[0]) && !isGitSource(c.params.SourcePaths[0]) {
			return errors.New("checksum requires HTTP(S) or Git sources")
		}
	}
	for _, src := range c.params.SourcePaths {
		switch {
		case isGitSource(src):
			if !c.add {
				return errors.New("source can't be a git ref for COPY")
			}
		case isHTTPSource(src):
			if !c.add {
				return errors.New("source can't be a URL for COPY")
			}
		default:
			if err := validateCopySourcePath(src, c); err != nil {
				return err
			}
		}
	}
	return nil
}

func isNumeric(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// validateCopySourcePath is CopyIgnoredFile. A .dockerignore with exclusions (!pattern) is not
// checked: whether a path survives is then too hard to tell statically.
func validateCopySourcePath(src string, c copyCheck) error {
	if c.ignore == nil || c.ignore.Exclusions() {
		return nil
	}
	cmd := "Copy"
	if c.add {
		cmd = "Add"
	}
	src = filepath.ToSlash(filepath.Clean(src))
	if (src == "." || src == "/") && !rootIgnored(c.ignore) {
		return nil
	}
	ok, err := c.ignore.MatchesOrParentMatches(src)
	if err != nil {
		return err
	}
	if ok {
		c.lint.Run(&linter.RuleCopyIgnoredFile, c.loc, linter.RuleCopyIgnoredFile.Format(cmd, src))
	}
	return nil
}

func rootIgnored(m *patternmatcher.PatternMatcher) bool {
	for _, p := range m.Patterns() {
		if p.Exclusion() {
			continue
		}
		switch p.String() {
		case "*", "**", "**/*":
			return true
		}
	}
	return false
}

// Secret-looking names: a whole word of the name (split at _) is one of these.
var (
	secretWords  = []string{"apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"}
	allowedWords = []string{"public", "file", "version"}
)

func hasWord(key string, words []string) bool {
	lower := strings.ToLower(key)
	parts := strings.Split(lower, "_")
	// The pattern BuildKit uses matches a word at the start or the end of the name, or between
	// underscores; any underscore-separated part is such a word.
	for _, p := range parts {
		if slices.Contains(words, p) {
			return true
		}
	}
	return false
}

func validateNoSecretKey(instruction, key string, loc []bkparser.Range, lint *linter.Linter) {
	if hasWord(key, secretWords) && !hasWord(key, allowedWords) {
		lint.Run(&linter.RuleSecretsUsedInArgOrEnv, loc, linter.RuleSecretsUsedInArgOrEnv.Format(instruction, key))
	}
}

func checkSignal(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n == 0 {
			return fmt.Errorf("Invalid signal: %s", s) //nolint:staticcheck // BuildKit's message
		}
		return nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if unix.SignalNum("SIG"+name) != 0 {
		return nil
	}
	if strings.HasPrefix(name, "RTMIN") || strings.HasPrefix(name, "RTMAX") {
		return nil
	}
	return fmt.Errorf("Invalid signal: %s", s) //nolint:staticcheck // BuildKit's message
}

// dispatchExpose checks each port as BuildKit parses it: ExposeProtoCasing, ExposeInvalidFormat.
func (w *walker) dispatchExpose(d *checkStage, c *instructions.ExposeCommand, lint *linter.Linter) error {
	var ports []string
	for _, p := range c.Ports {
		ps, err := w.shlex.ProcessWords(p, d.env.clone())
		if err != nil {
			return err
		}
		ports = append(ports, ps...)
	}
	for _, raw := range ports {
		if err := checkPort(raw, c.Location(), lint); err != nil {
			return err
		}
	}
	return nil
}

func checkPort(raw string, loc []bkparser.Range, lint *linter.Linter) error {
	ip, hostPort, containerPort := splitPortParts(raw)
	port, proto, _ := strings.Cut(containerPort, "/")
	if port == "" {
		return fmt.Errorf("invalid port: %q: no port specified", raw)
	}
	switch strings.ToLower(proto) {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return fmt.Errorf("invalid port: %q: invalid proto: %s", raw, proto)
	}
	if proto != strings.ToLower(proto) {
		lint.Run(&linter.RuleExposeProtoCasing, loc, linter.RuleExposeProtoCasing.Format(raw))
	}
	if ip != "" || hostPort != "" {
		lint.Run(&linter.RuleExposeInvalidFormat, loc, linter.RuleExposeInvalidFormat.Format(raw))
	}
	if ip != "" && ip[0] == '[' {
		rawIP, _, err := net.SplitHostPort(ip + ":")
		if err != nil {
			return fmt.Errorf("invalid IP address %v: %w", ip, err)
		}
		ip = rawIP
	}
	if ip != "" && net.ParseIP(ip) == nil {
		return errors.New("invalid IP address: " + ip)
	}
	start, end, err := portRange(port)
	if err != nil {
		return errors.New("invalid containerPort: " + port)
	}
	if hostPort != "" {
		hs, he, err := portRange(hostPort)
		if err != nil {
			return errors.New("invalid hostPort: " + hostPort)
		}
		if end-start != he-hs && end != start {
			return fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s", port, hostPort)
		}
	}
	return nil
}

func splitPortParts(raw string) (ip, hostPort, containerPort string) {
	parts := strings.Split(raw, ":")
	switch n := len(parts); n {
	case 1:
		return "", "", parts[0]
	case 2:
		return "", parts[0], parts[1]
	default:
		return strings.Join(parts[:n-2], ":"), parts[n-2], parts[n-1]
	}
}

func portRange(s string) (int, int, error) {
	if s == "" {
		return 0, 0, errors.New("empty string specified for ports")
	}
	a, b, ok := strings.Cut(s, "-")
	start, err := portNumber(a)
	if err != nil {
		return 0, 0, err
	}
	if !ok || a == b {
		return start, start, nil
	}
	end, err := portNumber(b)
	if err != nil {
		return 0, 0, err
	}
	if end < start {
		return 0, 0, errors.New("invalid port range: " + s)
	}
	return start, end, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 0)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > 65535 {
		return 0, errors.New("value out of range")
	}
	return int(n), nil
}
