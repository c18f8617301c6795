package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/klauspost/compress/gzip"
)

// readStdin reads what `kiln build` takes on standard input into a new directory under tmp:
// with wantContext, a build context as a tar archive (plain, gzip or bzip2), or a Dockerfile
// alone (an empty context, as `docker build -` takes one); with wantDockerfile, the Dockerfile.
// It returns the directory and, when standard input was a Dockerfile, its text.
func readStdin(tmp string, wantContext, wantDockerfile bool) (string, []byte, error) {
	if wantContext && wantDockerfile {
		return "", nil, errors.New("the context and the Dockerfile cannot both be read from standard input")
	}
	dir, err := os.MkdirTemp(tmp, "stdin-context-")
	if err != nil {
		return "", nil, err
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	if wantDockerfile {
		text, err := io.ReadAll(io.LimitReader(in, 16<<20))
		if err != nil {
			return dir, nil, fmt.Errorf("read Dockerfile from standard input: %w", err)
		}
		return dir, text, nil
	}
	head, _ := in.Peek(512)
	r, isArchive, err := archiveReader(head, in)
	if err != nil {
		return dir, nil, err
	}
	if !isArchive {
		text, err := io.ReadAll(io.LimitReader(in, 16<<20))
		if err != nil {
			return dir, nil, fmt.Errorf("read Dockerfile from standard input: %w", err)
		}
		return dir, text, nil
	}
	if err := untarContext(r, dir); err != nil {
		return dir, nil, fmt.Errorf("read build context from standard input: %w", err)
	}
	return dir, nil, nil
}

// archiveReader tells a tar archive (maybe compressed) from a Dockerfile by its first bytes.
func archiveReader(head []byte, in io.Reader) (io.Reader, bool, error) {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(in)
		return zr, true, err
	case bytes.HasPrefix(head, []byte("BZh")):
		return bzip2.NewReader(in), true, nil
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return in, true, nil
	}
	return in, false, nil
}

// untarContext writes a context archive into dir; no entry can land outside it.
func untarContext(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		if name == "" {
			continue
		}
		p, err := securejoin.SecureJoin(dir, name)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode) & os.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		default:
			// Contexts hold files, directories and links; other entries are skipped.
		}
	}
}
