package bundle

import (
	"archive/zip"
	"bytes"
	"math"
	"strings"
	"testing"
)

// TestBudget checks the limits on the bytes an entry actually expands to,
// which hold even if its header lies: the tightest of the per-file limit,
// what is left of the total, and the ratio to its compressed size.
func TestBudget(t *testing.T) {
	l := Limits{MaxFiles: 10, MaxFileSize: 10 << 20, MaxTotalSize: 20 << 20, MaxRatio: 100}
	for _, tt := range []struct {
		name       string
		compressed uint64
		used       int64
		wantN      int64
		want       string
	}{
		{"per file", 1 << 20, 0, 10 << 20, "expands past 10.0 MiB, the limit per file (its header said 10 B)"},
		{"total left", 1 << 20, 15 << 20, 5 << 20, "package expands past 20.0 MiB, the limit for all files"},
		{"nothing left", 1 << 20, 20 << 20, 0, "the limit for all files"},
		{"ratio", 50 << 10, 0, 5000 << 10, "expands more than 100 times its compressed size 50.0 KiB"},
		{"ratio floor", 10, 0, ratioFloor, "expands more than 100 times"},
		{"ratio overflow", math.MaxUint64, 0, 10 << 20, "limit per file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := &archive{limits: l}
			zf := &zip.File{FileHeader: zip.FileHeader{Name: "f", CompressedSize64: tt.compressed, UncompressedSize64: 10}}
			b := a.budget(entry{zf: zf, name: "f"}, tt.used)
			if b.n != tt.wantN || !strings.Contains(b.refusal.Error(), tt.want) {
				t.Errorf("got %d bytes, refusal %q; want %d, %q", b.n, b.refusal, tt.wantN, tt.want)
			}
		})
	}
}

// TestCopyLimited checks that the bytes actually decompressed are counted,
// whatever the header said: a reader that never ends is cut off at the
// budget, and no more than the budget is written.
func TestCopyLimited(t *testing.T) {
	refused := refuse("too big")
	for _, tt := range []struct {
		name    string
		src     int64 // bytes the reader yields; -1 for endless
		budget  int64
		wantN   int64
		wantErr error
	}{
		{"under", 999, 1000, 999, nil},
		{"exactly", 1000, 1000, 1000, nil},
		{"one over", 1001, 1000, 1000, refused},
		{"endless", -1, 1000, 1000, refused},
		{"zero budget", 1, 0, 0, refused},
		{"empty", 0, 0, 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var src = bytes.NewReader(make([]byte, max(tt.src, 0)))
			var w bytes.Buffer
			var n int64
			var err error
			if tt.src < 0 {
				n, err = copyLimited(&w, endless{}, budget{tt.budget, refused})
			} else {
				n, err = copyLimited(&w, src, budget{tt.budget, refused})
			}
			if n != tt.wantN || int64(w.Len()) != tt.wantN || err != tt.wantErr {
				t.Errorf("got %d bytes (%d written), error %v; want %d bytes, error %v", n, w.Len(), err, tt.wantN, tt.wantErr)
			}
		})
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) { clear(p); return len(p), nil }
