package inference

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzRewrites feeds model bytes to the graph rewrites, which read a model
// file before ONNX Runtime does: whatever the bytes, they return an error
// or a result, never panic, and a result is itself readable.
func FuzzRewrites(f *testing.F) {
	for _, name := range []string{"wide-head.onnx", "gelu-chain.onnx", "head-threshold.onnx", "halves.onnx"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "models", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "logits")
		f.Add(b, "output")
	}
	f.Fuzz(func(t *testing.T, data []byte, output string) {
		if cut, ok, err := splitHead(data, output); err == nil && ok {
			if _, err := pbFields(cut.body); err != nil {
				t.Fatalf("the body is not readable: %v", err)
			}
			if _, err := pbFields(cut.head); err != nil {
				t.Fatalf("the output layer is not readable: %v", err)
			}
		}
		if fused, n, err := fuseGelu(data); err == nil && n > 0 {
			if _, again, err := fuseGelu(fused); err != nil || again != 0 {
				t.Fatalf("fusing again found %d chains (%v)", again, err)
			}
		}
	})
}
