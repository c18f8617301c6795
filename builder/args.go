package builder

import (
	"fmt"
	"strings"

	"kiln/parser"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// env is an ordered KEY=VALUE list with replace-in-place updates: the environment a RUN sees
// and the image config's Env both behave this way.
type env []string

func (e env) Get(key string) (string, bool) {
	for i := len(e) - 1; i >= 0; i-- {
		k, v := splitKV(e[i])
		if shell.EqualEnvKeys(k, key) {
			return v, true
		}
	}
	return "", false
}

func (e env) Keys() []string {
	keys := make([]string, 0, len(e))
	for _, kv := range e {
		k, _ := splitKV(kv)
		keys = append(keys, k)
	}
	return keys
}

// with returns e with key set to value, replacing an earlier value in place.
func (e env) with(key, value string) env {
	out := append(env(nil), e...)
	for i, kv := range out {
		if k, _ := splitKV(kv); shell.EqualEnvKeys(k, key) {
			out[i] = key + "=" + value
			return out
		}
	}
	return append(out, key+"="+value)
}

func splitKV(kv string) (string, string) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:]
		}
	}
	return kv, ""
}

// argScope is a set of ARGs with their values (nil: declared without a value).
type argScope struct {
	keys []string
	vals map[string]*string
}

func (a *argScope) Get(key string) (string, bool) {
	v, ok := a.vals[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func (a *argScope) Keys() []string {
	var keys []string
	for _, k := range a.keys {
		if a.vals[k] != nil {
			keys = append(keys, k)
		}
	}
	return keys
}

func (a *argScope) set(key string, v *string) {
	if _, ok := a.vals[key]; !ok {
		a.keys = append(a.keys, key)
	}
	a.vals[key] = v
}

func (a *argScope) expand(lex *shell.Lex, word string) (string, error) {
	s, _, err := lex.ProcessWord(word, a)
	return s, err
}

// globalArgs evaluates the ARGs before the first FROM, in order, each default expanded with the
// ones before it, and --build-arg values taking precedence.
func (bd *build) globalArgs() (*argScope, error) {
	g := &argScope{vals: map[string]*string{}}
	// The automatic platform args are in the global scope without an ARG (usable in FROM); a
	// stage sees them when it declares them without a value.
	for _, kv := range platformArgs() {
		v := kv[1]
		g.set(kv[0], &v)
	}
	for _, meta := range bd.df.MetaArgs {
		for _, kv := range meta.Args {
			var v *string
			if kv.Value != nil {
				s, err := g.expand(bd.lex(), *kv.Value)
				if err != nil {
					return nil, parser.At(bd.df.Path, meta.Location(), err)
				}
				v = &s
			}
			if o, ok := bd.opts.BuildArgs[kv.Key]; ok {
				o := o
				v = &o
			}
			g.set(kv.Key, v)
		}
	}
	return g, nil
}

// nativePlatform is the one platform kiln builds for: the machine's own, without emulation.
const nativePlatform = "linux/amd64"

// platformArgs are BuildKit's automatic platform args, for building on and for linux/amd64.
func platformArgs() [][2]string {
	return [][2]string{
		{"BUILDPLATFORM", nativePlatform}, {"BUILDOS", "linux"}, {"BUILDARCH", "amd64"}, {"BUILDVARIANT", ""},
		{"TARGETPLATFORM", nativePlatform}, {"TARGETOS", "linux"}, {"TARGETARCH", "amd64"}, {"TARGETVARIANT", ""},
	}
}

// proxyArgs are the predefined ARGs: a --build-arg of one of them reaches RUN's environment
// without an ARG instruction, and never the image's history or config.
var proxyArgs = []string{
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
	"NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}

// proxyEnv is the RUN environment that the predefined proxy args given with --build-arg add.
func (bd *build) proxyEnv() []string {
	var out []string
	for _, k := range proxyArgs {
		if v, ok := bd.opts.BuildArgs[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// checkPlatform accepts the native platform (by any of its spellings) and refuses the others:
// kiln runs no emulator.
func checkPlatform(p string) error {
	switch strings.ToLower(p) {
	case "", "linux", "linux/amd64", "linux/x86_64", "amd64", "x86_64", "linux/amd64/v1", "local":
		return nil
	}
	return fmt.Errorf("platform %q is not supported: kiln builds for %s only (no emulation is available)", p, nativePlatform)
}
