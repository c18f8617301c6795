package builder

import (
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
