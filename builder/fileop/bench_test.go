package fileop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchTree makes 5,000 small files in 50 directories.
func benchTree(b *testing.B) string {
	src := filepath.Join(b.TempDir(), "src")
	var nodes []node
	for d := range 50 {
		for f := range 100 {
			nodes = append(nodes, file(fmt.Sprintf("d%02d/f%03d.txt", d, f), fmt.Sprintf("content of %d/%d\n", d, f), 0o644))
		}
	}
	mkTree(b, src, nodes...)
	return src
}

func BenchmarkCopy5000(b *testing.B) {
	src := benchTree(b)
	dstBase := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		dst := filepath.Join(dstBase, fmt.Sprint(i))
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := Copy(context.Background(), Spec{SrcRoot: src, DestRoot: dst, Sources: []string{"."}, Dest: "/app/"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChecksum5000(b *testing.B) {
	src := benchTree(b)
	ig, err := NewIgnore([]string{"*.log", "d49"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := Checksum(context.Background(), Spec{SrcRoot: src, Sources: []string{"."}, Ignore: ig}); err != nil {
			b.Fatal(err)
		}
	}
}
