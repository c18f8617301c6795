package parser

import "strings"

// envList is a stage's environment as BuildKit's checks see it: an ordered list where setting a
// key moves it to the end, so that Keys (which feed "did you mean" suggestions) come in the
// order BuildKit's llb.EnvList gives them.
type envList struct {
	keys []string
	vals map[string]string
}

func newEnvList() *envList { return &envList{vals: map[string]string{}} }

// clone copies the list: stages inherit their base's environment and then diverge.
func (e *envList) clone() *envList {
	c := &envList{keys: append([]string(nil), e.keys...), vals: make(map[string]string, len(e.vals))}
	for k, v := range e.vals {
		c.vals[k] = v
	}
	return c
}

// set adds or replaces k, moving it to the end.
func (e *envList) set(k, v string) {
	if _, ok := e.vals[k]; ok {
		for i, kk := range e.keys {
			if kk == k {
				e.keys = append(e.keys[:i], e.keys[i+1:]...)
				break
			}
		}
	}
	e.keys = append(e.keys, k)
	e.vals[k] = v
}

// Get implements shell.EnvGetter.
func (e *envList) Get(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

// Keys implements shell.EnvGetter.
func (e *envList) Keys() []string { return append([]string(nil), e.keys...) }

// splitEnv splits a KEY=VALUE entry of an image config.
func splitEnv(kv string) (string, string) {
	k, v, _ := strings.Cut(kv, "=")
	return k, v
}
