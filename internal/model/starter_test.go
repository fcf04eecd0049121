package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/onnx"
)

func graph(in, out onnx.ValueInfo) *onnx.Model {
	return &onnx.Model{Graph: onnx.Graph{Inputs: []onnx.ValueInfo{in}, Outputs: []onnx.ValueInfo{out}}}
}

// TestStarter: every starter manifest loads as written, with the mode, sizes
// and classes the graph implies; graphs segbridge cannot feed are refused
// with the reason.
func TestStarter(t *testing.T) {
	f := onnx.Float
	tests := []struct {
		name    string
		g       *onnx.Model
		want    []string
		wantErr string
	}{
		{"2-D, fixed batch of 4, 3 channels, 5 classes", graph(
			onnx.TensorValue("x", f, onnx.Fixed(4), onnx.Fixed(3), onnx.Fixed(256), onnx.Fixed(256)),
			onnx.TensorValue("y", f, onnx.Fixed(4), onnx.Fixed(5), onnx.Fixed(256), onnx.Fixed(256))),
			[]string{"mode: slices", "batch_size: 4 ", "channels: 3", "channel_mode: repeat", "slices of 256 x 256 pixels",
				"activation: softmax", "- label: 4", "name: x", "name: y"}, ""},
		{"3-D whole volume", graph(
			onnx.TensorValue("input", f, onnx.Fixed(1), onnx.Fixed(1), onnx.Free("D"), onnx.Free("H"), onnx.Free("W")),
			onnx.TensorValue("out", f, onnx.Fixed(1), onnx.Fixed(1), onnx.Free("D"), onnx.Free("H"), onnx.Free("W"))),
			[]string{"mode: volume", "activation: sigmoid", "threshold: 0.5", "- label: 1"}, ""},
		{"output channels unknown", graph(
			onnx.TensorValue("input", f, onnx.Fixed(1), onnx.Fixed(1), onnx.Free("D"), onnx.Free("H"), onnx.Free("W")),
			onnx.ValueInfo{Name: "out", Kind: "tensor", ElemType: f}),
			[]string{"does not fix its channels", "channels: 2"}, ""},
		{"rank 3", graph(onnx.TensorValue("x", f, onnx.Fixed(1), onnx.Fixed(2), onnx.Fixed(3)), onnx.TensorValue("y", f)),
			nil, `input "x" is [1, 2, 3]: segbridge feeds 2-D slices [N, C, H, W] or volumes [1, 1, D, H, W]`},
		{"two channels in 3-D", graph(onnx.TensorValue("x", f, onnx.Fixed(1), onnx.Fixed(2), onnx.Free("D"), onnx.Free("H"), onnx.Free("W")), onnx.TensorValue("y", f)),
			nil, "segbridge feeds one channel"},
		{"uint8 input", graph(onnx.TensorValue("x", onnx.Uint8, onnx.Fixed(1), onnx.Fixed(1), onnx.Fixed(8), onnx.Fixed(8)), onnx.TensorValue("y", f)),
			nil, `input "x" is uint8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "My Model.v2.onnx"), "")
			text, err := Starter("My Model.v2.onnx", tt.g)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Starter error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(text), w) {
					t.Errorf("starter lacks %q:\n%s", w, text)
				}
			}
			path := filepath.Join(dir, "m.yaml")
			if err := os.WriteFile(path, text, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path)
			if err != nil {
				t.Fatalf("the starter does not load: %v\n%s", err, text)
			}
			if m.Name != "my-model-v2" || !strings.Contains(string(text), ChooseMark) {
				t.Errorf("name %q", m.Name)
			}
		})
	}
}
