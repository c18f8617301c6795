package fileop

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"os"
	"syscall"

	digest "github.com/opencontainers/go-digest"
)

// checksumVersion changes whenever the hashed record format changes, so old
// cache keys never match new ones by accident.
const checksumVersion = "kiln.fileop.checksum.v1"

// Checksum hashes exactly what Copy would read: for each resolved source (in
// order) its name and, for every object copied (lexical order), the relative
// path, type, mode, symlink target, device number, xattrs, hardlink
// structure and file contents. Mtimes are left out (as BuildKit's content
// checksum); owners too, unless KeepOwners makes them part of the result.
// .dockerignore and wildcards are applied as Copy applies them; DestRoot is
// not used.
func Checksum(ctx context.Context, s Spec) (digest.Digest, error) {
	srcs, err := resolveSources(ctx, &s)
	if err != nil {
		return "", err
	}
	h := &hasher{h: sha256.New(), sub: sha256.New(), buf: make([]byte, copyBufSize), xbuf: make([]byte, 4096), keepOwners: s.KeepOwners && s.Chown == nil}
	h.str(checksumVersion)
	for _, src := range srcs {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		h.h.Write([]byte{'S'})
		h.str(src.name)
		h.inodes = nil
		top := &entry{abs: src.abs, rel: "", fi: src.fi}
		if err := h.entry(top); err != nil {
			return "", fmt.Errorf("%s failed: checksum %s: %w", s.instruction(), "/"+src.rel, err)
		}
		if !src.fi.IsDir() {
			continue
		}
		_, st, err := s.Ignore.stateOf(src.rel)
		if err != nil {
			return "", err
		}
		w := walker{ctx: ctx, ig: s.Ignore, ex: s.exclude, inc: src.inc, visit: h.entry}
		if err := w.walkDir(src.abs, src.rel, "", walkState{ig: st}); err != nil {
			return "", fmt.Errorf("%s failed: checksum %s: %w", s.instruction(), "/"+src.rel, err)
		}
	}
	return digest.NewDigest(digest.SHA256, h.h), nil
}

type hasher struct {
	h, sub     hash.Hash
	sum        []byte
	buf, xbuf  []byte
	num        [binary.MaxVarintLen64]byte
	keepOwners bool
	inodes     map[fileID]string
}

func (h *hasher) uint(v uint64) {
	n := binary.PutUvarint(h.num[:], v)
	h.h.Write(h.num[:n])
}

// str writes a length-prefixed string so records can't run into each other.
func (h *hasher) str(s string) {
	h.uint(uint64(len(s)))
	io.WriteString(h.h, s)
}

func (h *hasher) entry(e *entry) error {
	fi := e.fi
	m := fi.Mode()
	st, _ := fi.Sys().(*syscall.Stat_t)
	h.h.Write([]byte{'E'})
	h.str(e.rel)
	h.h.Write([]byte{typeChar(m)})
	h.uint(uint64(m & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)))
	if h.keepOwners && st != nil {
		h.uint(uint64(st.Uid))
		h.uint(uint64(st.Gid))
	}
	vals, names, err := listXattrs(e.abs, h.xbuf)
	if err != nil {
		return err
	}
	h.uint(uint64(len(names)))
	for _, k := range names {
		h.str(k)
		h.str(string(vals[k]))
	}
	switch {
	case m.IsRegular():
		if st != nil && st.Nlink > 1 {
			id := fileID{dev: uint64(st.Dev), ino: st.Ino}
			if first, ok := h.inodes[id]; ok {
				h.h.Write([]byte{'H'})
				h.str(first)
				return nil
			}
			if h.inodes == nil {
				h.inodes = map[fileID]string{}
			}
			h.inodes[id] = e.rel
		}
		return h.content(e.abs, fi.Size())
	case m&os.ModeSymlink != 0:
		link, err := os.Readlink(e.abs)
		if err != nil {
			return err
		}
		h.str(link)
	case m&os.ModeDevice != 0 && st != nil:
		h.uint(uint64(st.Rdev))
	}
	return nil
}

// content hashes a file's bytes, framed by their count. The size from Lstat
// is only a hint: what is read is what counts.
func (h *hasher) content(p string, _ int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h.sub.Reset()
	n, err := io.CopyBuffer(h.sub, readerOnly{f}, h.buf)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	h.uint(uint64(n))
	h.sum = h.sub.Sum(h.sum[:0])
	h.h.Write(h.sum)
	return nil
}

func typeChar(m os.FileMode) byte {
	switch {
	case m.IsDir():
		return 'd'
	case m.IsRegular():
		return 'f'
	case m&os.ModeSymlink != 0:
		return 'l'
	case m&os.ModeCharDevice != 0:
		return 'c'
	case m&os.ModeDevice != 0:
		return 'b'
	case m&os.ModeNamedPipe != 0:
		return 'p'
	case m&os.ModeSocket != 0:
		return 's'
	}
	return '?'
}
