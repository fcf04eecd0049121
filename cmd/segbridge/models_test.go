package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
)

// byomModels builds the two small models shaped like what users bring from
// PyTorch (testdata/models/make_byom.py): a 2-D U-Net with a sigmoid and a
// dynamic batch axis, and a 3-D network on fixed 32³ patches.
func byomModels(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command(fixture.Python, filepath.Join(fixture.Root(t), "testdata/models/make_byom.py"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make_byom.py (run make deps for python3-onnx): %v\n%s", err, out)
	}
	return dir
}

// runCmd runs segbridge with args and an environment of its own.
func runCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = run(context.Background(), args, func(k string) string { return env[k] }, &o, &e)
	return o.String(), e.String(), err
}

// TestModels_InitCheckSegment is the bring-your-own-model path of the
// README's "From PyTorch": `models init` writes a manifest from the graph
// (slices with a free batch for the 2-D U-Net, windows for the fixed-size
// 3-D network), `models check` runs each once on a synthetic volume and
// says what it fed and got, and `segment` runs the 2-D one on a real series.
func TestModels_InitCheckSegment(t *testing.T) {
	dir := byomModels(t)
	env := map[string]string{"SEGBRIDGE_ORT_LIB": fixture.ORTLibrary(t), "SEGBRIDGE_LOG_LEVEL": "warn"}
	tests := []struct {
		model        string
		wantManifest []string
		wantCheck    []string
	}{
		{"unet2d", []string{
			"mode: slices", "batch_size: 8          # CHOOSE: the graph's batch axis batch is free", "channels: 1",
			"activation: sigmoid", "threshold: 0.5", "orientation: SPL", "name: output",
		}, []string{
			`fed: 12 x [8, 1, 128, 128] to input "input" (slices mode`, `got: output "output" [8, 1, 128, 128]`,
			"read as probabilities, label where >= 0.5", "label 1 Segment 1:",
		}},
		{"net3d", []string{
			"mode: window", "patch_size: [32, 32, 32]", "name: image", "activation: softmax", "name: logits", "orientation: RAS",
		}, []string{
			`x [1, 1, 32, 32, 32] to input "image" (window mode`, `got: output "logits" [1, 2, 32, 32, 32]`,
			"read as class scores, label = argmax", "label 1 Segment 1:",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			onnxPath := filepath.Join(dir, tt.model+".onnx")
			stdout, stderr, err := runCmd(t, env, "models", "init", onnxPath)
			if err != nil {
				t.Fatalf("models init: %v\n%s", err, stderr)
			}
			manifest := filepath.Join(dir, tt.model+".yaml")
			b, err := os.ReadFile(manifest)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.wantManifest {
				if !strings.Contains(string(b), w) {
					t.Errorf("manifest lacks %q:\n%s", w, b)
				}
			}
			if !strings.Contains(stdout, "edit the lines marked") {
				t.Errorf("init said %q", stdout)
			}
			if _, _, err := runCmd(t, env, "models", "init", onnxPath); err == nil || !strings.Contains(err.Error(), "exists") {
				t.Errorf("a second init without --force: %v", err)
			}

			stdout, stderr, err = runCmd(t, env, "models", "check", manifest)
			if err != nil {
				t.Fatalf("models check: %v\n%s\n%s", err, stdout, stderr)
			}
			t.Logf("models check %s:\n%s", tt.model, stdout)
			for _, w := range tt.wantCheck {
				if !strings.Contains(stdout, w) {
					t.Errorf("check output lacks %q", w)
				}
			}
			if !regexp.MustCompile(`label 1 Segment 1: [1-9][0-9]* voxels`).MatchString(stdout) {
				t.Errorf("check labelled nothing")
			}
		})
	}

	// The 2-D model with the manifest init wrote, on a real series.
	{
		s := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2")
		out := filepath.Join(t.TempDir(), "seg.dcm")
		stdout, stderr, err := runCmd(t, env, "segment", s.Dir, "--model", filepath.Join(dir, "unet2d.yaml"), "-o", out)
		if err != nil {
			t.Fatalf("segment: %v\n%s", err, stderr)
		}
		t.Logf("segment:\n%s", stdout)
		if !strings.Contains(stdout, "wrote "+out) {
			t.Errorf("segment said %q", stdout)
		}
		if errs, _ := fixture.Dciodvfy(t, out); len(errs) > 0 {
			t.Errorf("dciodvfy: %s", strings.Join(errs, "\n"))
		}
	}
}

// TestModels_CheckSaysWhatIsWrong: a manifest that calls logits
// probabilities is run and told so; a manifest naming an output the graph
// does not have fails naming it.
func TestModels_CheckSaysWhatIsWrong(t *testing.T) {
	dir := byomModels(t)
	env := map[string]string{"SEGBRIDGE_ORT_LIB": fixture.ORTLibrary(t), "SEGBRIDGE_LOG_LEVEL": "warn"}
	if _, stderr, err := runCmd(t, env, "models", "init", filepath.Join(dir, "net3d.onnx")); err != nil {
		t.Fatalf("models init: %v\n%s", err, stderr)
	}
	manifest := filepath.Join(dir, "net3d.yaml")
	b, _ := os.ReadFile(manifest)
	logits := strings.Replace(string(b), "activation: softmax", "activation: sigmoid\n  channels: 2\n  threshold: 0.5\n  #", 1)
	if err := os.WriteFile(manifest, []byte(logits), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runCmd(t, env, "models", "check", manifest)
	if err != nil || !strings.Contains(stdout, "note: the output is not probabilities") {
		t.Errorf("check of a sigmoid manifest on logits: %v\n%s", err, stdout)
	}
	wrong := strings.Replace(string(b), "name: logits", "name: probabilities", 1)
	if err := os.WriteFile(manifest, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = runCmd(t, env, "models", "check", manifest)
	if err == nil || !strings.Contains(stdout, `FAILED: the graph has no output "probabilities"`) {
		t.Errorf("check of a wrong output name: %v\n%s", err, stdout)
	}
}

// TestModels_InstallFailsWhole: `segbridge models install brainchop` from a
// server whose copy has one corrupted byte, or lacks a file, fails naming
// the file and installs nothing; without a URL it says where the files are.
func TestModels_InstallFailsWhole(t *testing.T) {
	published := fixture.Shared(t, "models", "brainchop-tfjs")
	for _, tc := range []struct {
		name, file, want string
		breakIt          func(path string) error
	}{
		{"corrupted byte", "model5_gw_ae/group1-shard1of1.bin", "SHA-256 mismatch", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[100] ^= 0x80
			return os.WriteFile(p, b, 0o644)
		}},
		{"missing file", "model18cls/model.bin", "GET answered 404 Not Found", os.Remove},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("cp", "-r", published+"/.", dir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			if out, err := exec.Command("chmod", "-R", "u+w", dir).CombinedOutput(); err != nil {
				t.Fatalf("chmod: %v %s", err, out)
			}
			if err := tc.breakIt(filepath.Join(dir, tc.file)); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
			defer srv.Close()
			data := t.TempDir()
			env := map[string]string{"XDG_DATA_HOME": data, "SEGBRIDGE_MODELS_URL": srv.URL}
			_, _, err := runCmd(t, env, "models", "install", "brainchop")
			if err == nil || !strings.Contains(err.Error(), "nothing was installed") || !strings.Contains(err.Error(), tc.file) ||
				!strings.Contains(err.Error(), tc.want) {
				t.Fatalf("install error = %v, want one naming %s and %q", err, tc.file, tc.want)
			}
			left, _ := filepath.Glob(filepath.Join(data, "segbridge", "models", "*"))
			if len(left) != 0 {
				t.Errorf("the model folder holds %v", left)
			}
			if _, _, err := runCmd(t, env, "models"); err == nil || !strings.Contains(err.Error(), "segbridge models install brainchop") {
				t.Errorf("models with none installed: %v", err)
			}
		})
	}
	t.Run("unreachable server", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		data := t.TempDir()
		env := map[string]string{"XDG_DATA_HOME": data, "SEGBRIDGE_MODELS_URL": "http://" + addr}
		_, _, err = runCmd(t, env, "models", "install", "brainchop")
		if err == nil || !strings.Contains(err.Error(), "nothing was installed") || !strings.Contains(err.Error(), "model.json") {
			t.Errorf("error = %v", err)
		}
		if left, _ := filepath.Glob(filepath.Join(data, "segbridge", "models", "*")); len(left) != 0 {
			t.Errorf("the model folder holds %v", left)
		}
	})
}
