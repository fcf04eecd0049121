package install

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/onnx"
	"github.com/segbridge/segbridge/models"
)

// published copies the brainchop files as their authors publish them
// (../shared/models/brainchop-tfjs) into a folder a test may change, and
// serves it over HTTP on loopback.
func published(t *testing.T) (dir string, srv *httptest.Server) {
	t.Helper()
	src := fixture.Shared(t, "models", "brainchop-tfjs")
	dir = t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return dir, srv
}

func brainchop(t *testing.T) *Source {
	t.Helper()
	s, err := Load(models.FS, "brainchop")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// listing is a folder's entries and sizes, to show that nothing changed.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		fi, _ := e.Info()
		out = append(out, e.Name()+" "+fi.ModTime().String())
	}
	return out
}

// TestInstall_Brainchop installs the six brainchop models from a local HTTP
// server serving exactly the bytes their authors publish: every manifest
// loads with its converted model and colormap, and the folder holds nothing
// else.
func TestInstall_Brainchop(t *testing.T) {
	_, srv := published(t)
	src := brainchop(t)
	if got := src.Models(); len(got) != 6 {
		t.Fatalf("brainchop models %v, want six", got)
	}
	dir := filepath.Join(t.TempDir(), "models")
	var mu sync.Mutex
	done := map[string]Progress{}
	got, err := Install(context.Background(), src, nil, Config{BaseURL: srv.URL, Dir: dir, Version: "test",
		Progress: func(p Progress) { mu.Lock(); done[p.File] = p; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("installed %d models", len(got))
	}
	for f, p := range done {
		if p.Done != p.Total || p.Total <= 0 || p.Of != 6 {
			t.Errorf("last progress of %s: %+v", f, p)
		}
	}
	if _, ok := done["mindgrab/model.bin"]; !ok {
		t.Errorf("no progress for mindgrab/model.bin (saw %d files)", len(done))
	}
	ms, err := model.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 6 {
		t.Fatalf("the folder loads %d models", len(ms))
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"mindgrab.colormap.json", "mindgrab.onnx", "mindgrab.yaml", "model11_gw_ae.onnx", "model11_gw_ae.yaml",
		"model18cls.colormap.json", "model18cls.onnx", "model18cls.yaml", "model20chan3cls.colormap.json", "model20chan3cls.onnx",
		"model20chan3cls.yaml", "model21_104class.colormap.json", "model21_104class.onnx", "model21_104class.yaml",
		"model5_gw_ae.colormap.json", "model5_gw_ae.onnx", "model5_gw_ae.yaml"}
	if !slices.Equal(names, want) {
		t.Errorf("folder holds %v\nwant %v", names, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "model18cls.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	om, err := onnx.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := om.Meta("labels"); !strings.HasPrefix(v, `["Unknown","Cerebral-White-Matter"`) {
		t.Errorf("labels metadata %q", v)
	}
	if v, _ := om.Meta("source_sha256"); v != "57346ac8b66ebe8d92296b1cf9988143be4949b6ef9695a790ef3d7fba3fb81b" {
		t.Errorf("source_sha256 %q", v)
	}
}

// TestInstall_NothingHalfWay: a corrupted byte or a missing file fails the
// installation naming the file, and leaves the model folder as it was —
// here holding an earlier installation of model5_gw_ae.
func TestInstall_NothingHalfWay(t *testing.T) {
	pub, srv := published(t)
	src := brainchop(t)
	dir := filepath.Join(t.TempDir(), "models")
	if _, err := Install(context.Background(), src, []string{"model5_gw_ae"}, Config{BaseURL: srv.URL, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	before := listing(t, dir)

	flip := func(t *testing.T) {
		p := filepath.Join(pub, "mindgrab", "model.bin")
		orig, _ := os.ReadFile(p)
		b := slices.Clone(orig)
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(p, orig, 0o644) })
	}
	remove := func(t *testing.T) {
		if err := os.Remove(filepath.Join(pub, "model21_104class", "group1-shard1of1.bin")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		break_  func(*testing.T)
		file    string
		want    string
		wantSum bool
	}{
		{"a corrupted byte", flip, "mindgrab/model.bin", "SHA-256 mismatch", true},
		{"a 404", remove, "model21_104class/group1-shard1of1.bin", "404 Not Found", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.break_(t)
			_, err := Install(context.Background(), src, nil, Config{BaseURL: srv.URL, Dir: dir})
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != tc.file || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one naming %s with %q", err, tc.file, tc.want)
			}
			if errors.Is(err, ErrChecksum) != tc.wantSum {
				t.Errorf("errors.Is(ErrChecksum) = %v", !tc.wantSum)
			}
			if after := listing(t, dir); !slices.Equal(after, before) {
				t.Errorf("the model folder changed:\n%v\nwas\n%v", after, before)
			}
		})
	}
}

// TestInstall_FromFolder installs from a local copy of the published files
// (a path, then a file:// URL), as on a machine without network.
func TestInstall_FromFolder(t *testing.T) {
	pub, _ := published(t)
	for _, base := range []string{pub, "file://" + pub} {
		dir := t.TempDir()
		got, err := Install(context.Background(), brainchop(t), []string{"model11_gw_ae"}, Config{BaseURL: base, Dir: dir})
		if err != nil || len(got) != 1 || got[0].Bytes < 90000 {
			t.Fatalf("install from %s: %+v, %v", base, got, err)
		}
	}
}

func TestInstall_Refuses(t *testing.T) {
	src := brainchop(t)
	for _, tc := range []struct {
		name  string
		names []string
		cfg   Config
		want  string
	}{
		{"unknown model", []string{"model99"}, Config{BaseURL: "http://127.0.0.1:1", Dir: t.TempDir()}, `brainchop has no model "model99" (it has mindgrab, model11_gw_ae`},
		{"no base URL", nil, Config{Dir: t.TempDir()}, "no base URL"},
		{"odd scheme", nil, Config{BaseURL: "ftp://127.0.0.1/x", Dir: t.TempDir()}, "not http(s), file:// or a folder"},
		{"server down", []string{"mindgrab"}, Config{BaseURL: "http://127.0.0.1:1", Dir: t.TempDir()}, "brainchop mindgrab/model.json (http://127.0.0.1:1/mindgrab/model.json)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Install(context.Background(), src, tc.names, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Load(models.FS, "nobody"); err == nil {
		t.Error("Load of an unknown publisher worked")
	}
}
