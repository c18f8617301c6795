package fileop

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	digest "github.com/opencontainers/go-digest"
)

// ErrChecksumMismatch is wrapped when a fetched source (ADD --checksum) has
// other content than the checksum names.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// RemoteFile is an http(s) source of ADD, fetched into a directory.
type RemoteFile struct {
	URL          string
	Dir          string // the directory holding the file: a Spec's SrcRoot
	Name         string // the file's name in Dir: a Spec's source
	Digest       digest.Digest
	LastModified *time.Time // from the Last-Modified header, when it parses
}

// IsURL tells an http(s) source of ADD (git repository URLs aside, see
// ParseGitRef).
func IsURL(src string) bool { return isURL(src) }

// URLFileName is the name BuildKit's Dockerfile frontend gives a file
// fetched from rawURL: the last element of the URL's path, "__unnamed__"
// when it has none; names that could escape a directory become "download".
func URLFileName(rawURL string) string {
	f := "__unnamed__"
	if u, err := url.Parse(rawURL); err == nil {
		if base := path.Base(u.Path); base != "." && base != "/" {
			f = base
		}
	}
	name := filepath.Base(strings.TrimSpace(f))
	if name == "" || name == "." || name == ".." || name == "/" {
		return "download"
	}
	for _, r := range name {
		if r == 0 || unicode.IsControl(r) {
			return "download"
		}
	}
	return name
}

// FetchURL downloads rawURL into dir, which must exist, as BuildKit's http
// source stores a download: named by URLFileName, mode 0600, owned by the
// caller (0:0 when run as root), with the Last-Modified time (or the Unix
// epoch) as its mtime. The content is hashed as it is written; when
// checksum is set, another digest is an ErrChecksumMismatch error. Remote
// archives are never extracted.
func FetchURL(ctx context.Context, client *http.Client, rawURL, dir string, checksum digest.Digest) (RemoteFile, error) {
	if client == nil {
		client = http.DefaultClient
	}
	shown := redactURL(rawURL)
	if checksum != "" {
		if err := checksum.Validate(); err != nil {
			return RemoteFile{}, fmt.Errorf("--checksum=%s: %w", checksum, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return RemoteFile{}, fmt.Errorf("fetch %s: %w", shown, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return RemoteFile{}, fmt.Errorf("fetch %s: %w", shown, redactErr(err, rawURL, shown))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return RemoteFile{}, fmt.Errorf("fetch %s: invalid response status %d", shown, resp.StatusCode)
	}
	name := URLFileName(rawURL)
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return RemoteFile{}, fmt.Errorf("fetch %s: %w", shown, err)
	}
	algo := digest.SHA256
	if checksum != "" {
		algo = checksum.Algorithm()
	}
	h := algo.Hash()
	sum := sha256.New()
	w := io.Writer(io.MultiWriter(f, sum))
	if algo != digest.SHA256 {
		w = io.MultiWriter(f, sum, h)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		f.Close()
		return RemoteFile{}, fmt.Errorf("fetch %s: %w", shown, err)
	}
	if err := f.Close(); err != nil {
		return RemoteFile{}, fmt.Errorf("fetch %s: %w", shown, err)
	}
	if err := os.Chmod(p, 0o600); err != nil { // the umask may have taken bits
		return RemoteFile{}, err
	}
	rf := RemoteFile{URL: rawURL, Dir: dir, Name: name, Digest: digest.NewDigest(digest.SHA256, sum)}
	if checksum != "" {
		got := rf.Digest
		if algo != digest.SHA256 {
			got = digest.NewDigest(algo, h)
		}
		if got != checksum {
			return RemoteFile{}, fmt.Errorf("fetch %s: digest %s, expected %s: %w", shown, got, checksum, ErrChecksumMismatch)
		}
	}
	mtime := time.Unix(0, 0)
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			mtime = t
			rf.LastModified = &t
		}
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		return RemoteFile{}, fmt.Errorf("fetch %s: %w", shown, err)
	}
	return rf, nil
}

// redactURL hides a password in a URL, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// redactErr keeps the URL's password out of errors that quote the URL.
func redactErr(err error, raw, shown string) error {
	if raw == shown || !strings.Contains(err.Error(), raw) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), raw, shown))
}
