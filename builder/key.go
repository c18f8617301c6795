package builder

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
)

// keyVersion changes whenever the meaning of a step's result changes, so old records never match.
const keyVersion = "kiln-step-v1"

// stepKey is a step's cache key: the parent snapshot's chain ID (content, not history), the kind
// of step and everything that decides its result, as JSON so that no two inputs collide.
func stepKey(kind, parent string, inputs ...any) digest.Digest {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, v := range append([]any{keyVersion, kind, parent}, inputs...) {
		if err := enc.Encode(v); err != nil {
			// Inputs are strings, slices and maps of them: this cannot fail.
			panic(fmt.Sprintf("cache key input %T: %v", v, err))
		}
	}
	return digest.NewDigest(digest.SHA256, h)
}
