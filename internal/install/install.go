// Package install installs published pretrained models into a model folder:
// it downloads the files their authors publish, checks each against the
// SHA-256 sums pinned in segbridge, converts the network to ONNX (package
// tfjs) and puts the .onnx, its manifest and its colormap in the folder —
// every model asked for, or none.
package install

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/onnx"
	"github.com/segbridge/segbridge/internal/tfjs"
)

// Source is one publisher's models: the manifests segbridge installs them
// with and the SHA-256 sums of the files it publishes.
type Source struct {
	// Name names the publisher, e.g. "brainchop".
	Name string
	// Origin says where the publisher's files are, in words, for a person
	// who must set the base URL (NAME/ORIGIN).
	Origin string
	// sums are the pinned SHA-256 sums by path ("mindgrab/model.bin").
	sums map[string]string
	// manifests are the manifests to install, by model name, which is
	// also the model's folder in the published tree.
	manifests map[string][]byte
}

// Load reads a source from fsys (models.FS): NAME/SHA256SUMS, in the format
// sha256sum writes, a manifest NAME/<model>.yaml per model, whose file must
// be <model>.onnx, and NAME/ORIGIN.
func Load(fsys fs.FS, name string) (*Source, error) {
	sums, err := fs.ReadFile(fsys, path.Join(name, "SHA256SUMS"))
	if err != nil {
		return nil, fmt.Errorf("no published models named %q", name)
	}
	s := &Source{Name: name, sums: map[string]string{}, manifests: map[string][]byte{}}
	if b, err := fs.ReadFile(fsys, path.Join(name, "ORIGIN")); err == nil {
		s.Origin = strings.TrimSpace(string(b))
	}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		sum, file, ok := strings.Cut(line, "  ")
		if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 64 {
			return nil, fmt.Errorf("%s/SHA256SUMS: %q is not a sha256sum line", name, line)
		}
		s.sums[strings.TrimPrefix(file, "./")] = sum
	}
	yamls, err := fs.Glob(fsys, path.Join(name, "*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, y := range yamls {
		b, err := fs.ReadFile(fsys, y)
		if err != nil {
			return nil, err
		}
		m := strings.TrimSuffix(path.Base(y), ".yaml")
		if _, ok := s.sums[m+"/model.json"]; !ok {
			return nil, fmt.Errorf("%s: no pinned sum for %s/model.json", y, m)
		}
		s.manifests[m] = b
	}
	if len(s.manifests) == 0 {
		return nil, fmt.Errorf("%s: no manifests", name)
	}
	return s, nil
}

// Models lists the source's models by name.
func (s *Source) Models() []string {
	out := make([]string, 0, len(s.manifests))
	for m := range s.manifests {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Config configures an installation.
type Config struct {
	// BaseURL is where the publisher's files are: <BaseURL>/<model>/<file>.
	// http:// or https://, or a local folder (a path or file://). Required.
	BaseURL string
	// Dir is the model folder to install into; created when missing.
	// Required.
	Dir string
	// Client makes the HTTP requests. Default: a client whose requests
	// time out after 10 minutes.
	Client *http.Client
	// Progress, when set, is told of every file's download as it goes.
	Progress func(Progress)
	// Version is segbridge's version, written as the ONNX producer's.
	Version string
	// MaxFileSize bounds each downloaded file. Default 256 MiB.
	MaxFileSize int64
}

// Progress is a file's download progress.
type Progress struct {
	// Model is the model being installed, the N-th of Of.
	Model string
	N, Of int
	// File is the published path, e.g. "mindgrab/model.bin".
	File string
	// Done bytes of Total (-1 when the server does not say).
	Done, Total int64
}

// Installed is a model that Install put in the folder.
type Installed struct {
	Name string
	// Manifest and ONNX are the installed files' paths.
	Manifest, ONNX string
	// Bytes is the .onnx file's size.
	Bytes int64
}

// FileError is the error of one published file: its path, where it was
// read from, and why it is refused.
type FileError struct {
	Source, File, URL string
	Err               error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("%s %s (%s): %v", e.Source, e.File, e.URL, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// ErrChecksum is wrapped by the error of a file whose SHA-256 is not the
// pinned one.
var ErrChecksum = errors.New("SHA-256 mismatch")

// Install downloads, checks and converts the named models of src (all of
// them when names is empty) and installs them into cfg.Dir. Everything is
// prepared in a staging folder inside cfg.Dir first; only when every model
// is complete are the files moved into place, each model's manifest last,
// so a model folder never holds a manifest without its model, and a failed
// installation (a 404, a corrupted byte, a model that does not convert)
// changes nothing there. A model already installed is replaced.
func Install(ctx context.Context, src *Source, names []string, cfg Config) ([]Installed, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("install: no base URL for the published files")
	}
	if cfg.Dir == "" {
		return nil, errors.New("install: no model folder")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Minute}
	}
	if cfg.MaxFileSize <= 0 {
		cfg.MaxFileSize = 256 << 20
	}
	if len(names) == 0 {
		names = src.Models()
	}
	for _, n := range names {
		if _, ok := src.manifests[n]; !ok {
			return nil, fmt.Errorf("%s has no model %q (it has %s)", src.Name, n, strings.Join(src.Models(), ", "))
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create model folder: %w", err)
	}
	// The staging folder is inside the model folder, so moving files into
	// place is a rename on one file system. Loading the folder skips it:
	// only files directly in the folder are manifests.
	stage, err := os.MkdirTemp(cfg.Dir, ".install-")
	if err != nil {
		return nil, fmt.Errorf("create staging folder: %w", err)
	}
	defer os.RemoveAll(stage)

	in := &installer{src: src, cfg: cfg, stage: stage}
	var staged [][]string // per model: its files, manifest last
	for i, n := range names {
		files, err := in.prepare(ctx, n, i+1, len(names))
		if err != nil {
			return nil, err
		}
		staged = append(staged, files)
	}
	var out []Installed
	for i, files := range staged {
		for _, f := range files {
			if err := os.Rename(filepath.Join(stage, f), filepath.Join(cfg.Dir, f)); err != nil {
				return out, fmt.Errorf("install %s: %w", names[i], err)
			}
		}
		onnxPath := filepath.Join(cfg.Dir, names[i]+".onnx")
		fi, err := os.Stat(onnxPath)
		if err != nil {
			return out, err
		}
		out = append(out, Installed{Name: names[i], Manifest: filepath.Join(cfg.Dir, names[i]+".yaml"), ONNX: onnxPath, Bytes: fi.Size()})
	}
	return out, nil
}

type installer struct {
	src   *Source
	cfg   Config
	stage string
}

// prepare downloads and converts one model into the staging folder and
// returns the names of its files there, its manifest last.
func (in *installer) prepare(ctx context.Context, name string, n, of int) ([]string, error) {
	fetch := func(file string) ([]byte, error) {
		return in.fetch(ctx, name+"/"+file, func(done, total int64) {
			if in.cfg.Progress != nil {
				in.cfg.Progress(Progress{Model: name, N: n, Of: of, File: name + "/" + file, Done: done, Total: total})
			}
		})
	}
	mj, err := fetch("model.json")
	if err != nil {
		return nil, err
	}
	m, err := tfjs.ParseModel(mj)
	if err != nil {
		return nil, in.fileError(name+"/model.json", err)
	}
	w, err := m.LoadWeights(fetch)
	if fe := (*FileError)(nil); errors.As(err, &fe) {
		return nil, fe
	} else if err != nil {
		return nil, fmt.Errorf("%s %s: %w", in.src.Name, name, err)
	}
	var files []string
	meta := []onnx.Property{
		{Key: "source", Value: in.src.Name + " " + name + "/model.json"},
		{Key: "source_sha256", Value: in.src.sums[name+"/model.json"]},
	}
	var colormap []byte
	if _, ok := in.src.sums[name+"/colormap.json"]; ok {
		if colormap, err = fetch("colormap.json"); err != nil {
			return nil, err
		}
		files = append(files, name+".colormap.json")
		if err := os.WriteFile(filepath.Join(in.stage, name+".colormap.json"), colormap, 0o644); err != nil {
			return nil, err
		}
	}
	om, err := tfjs.Convert(m, w, tfjs.Options{GraphName: name, ProducerVersion: in.cfg.Version, Metadata: meta})
	if err != nil {
		return nil, fmt.Errorf("%s %s: convert: %w", in.src.Name, name, err)
	}
	if labels := colormapLabels(colormap); len(labels) > 0 && fmt.Sprint(len(labels)) == metaValue(om, "num_classes") {
		b, _ := json.Marshal(labels)
		om.Metadata = append(om.Metadata, onnx.Property{Key: "labels", Value: string(b)})
	}
	b, err := om.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", in.src.Name, name, err)
	}
	if err := os.WriteFile(filepath.Join(in.stage, name+".onnx"), b, 0o644); err != nil {
		return nil, err
	}
	files = append(files, name+".onnx")
	manifest := filepath.Join(in.stage, name+".yaml")
	if err := os.WriteFile(manifest, in.src.manifests[name], 0o644); err != nil {
		return nil, err
	}
	// The manifest must load as it will once installed: its file and
	// colormap beside it.
	loaded, err := model.Load(manifest)
	if err != nil {
		return nil, fmt.Errorf("%s %s: the manifest segbridge installs it with does not load: %w", in.src.Name, name, err)
	}
	if loaded.Name != name || filepath.Base(loaded.ONNXPath) != name+".onnx" {
		return nil, fmt.Errorf("%s %s: its manifest names model %s, file %s", in.src.Name, name, loaded.Name, loaded.File)
	}
	return append(files, name+".yaml"), nil
}

func metaValue(m *onnx.Model, key string) string {
	v, _ := m.Meta(key)
	return v
}

// colormapLabels reads the label names of a brainchop colormap, nil when
// there are none.
func colormapLabels(b []byte) []string {
	var cm struct {
		Labels []string `json:"labels"`
	}
	if len(b) == 0 || json.Unmarshal(b, &cm) != nil {
		return nil
	}
	return cm.Labels
}

func (in *installer) fileError(file string, err error) error {
	return &FileError{Source: in.src.Name, File: file, URL: in.url(file), Err: err}
}

func (in *installer) url(file string) string {
	return strings.TrimRight(in.cfg.BaseURL, "/") + "/" + file
}

// fetch reads one published file, checks its size and its pinned SHA-256,
// and reports progress as it reads.
func (in *installer) fetch(ctx context.Context, file string, progress func(done, total int64)) ([]byte, error) {
	want, ok := in.src.sums[file]
	if !ok {
		return nil, in.fileError(file, errors.New("segbridge pins no SHA-256 for this file, so it is not installed"))
	}
	body, total, err := in.open(ctx, file)
	if err != nil {
		return nil, in.fileError(file, err)
	}
	defer body.Close()
	progress(0, total)
	h := sha256.New()
	var buf bytes.Buffer
	r := io.TeeReader(io.LimitReader(body, in.cfg.MaxFileSize+1), h)
	chunk := make([]byte, 64<<10)
	for {
		k, err := r.Read(chunk)
		buf.Write(chunk[:k])
		if k > 0 {
			progress(int64(buf.Len()), total)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, in.fileError(file, fmt.Errorf("read: %w", err))
		}
	}
	if int64(buf.Len()) > in.cfg.MaxFileSize {
		return nil, in.fileError(file, fmt.Errorf("larger than %d bytes", in.cfg.MaxFileSize))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, in.fileError(file, fmt.Errorf("%w: the file's is %s, segbridge pins %s (a corrupted download, or a server with other files)", ErrChecksum, got, want))
	}
	return buf.Bytes(), nil
}

// open starts reading a published file over HTTP(S) or from a local
// folder, with its size when known (-1 otherwise).
func (in *installer) open(ctx context.Context, file string) (io.ReadCloser, int64, error) {
	u, err := url.Parse(in.cfg.BaseURL)
	if err != nil {
		return nil, 0, fmt.Errorf("base URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url(file), nil)
		if err != nil {
			return nil, 0, err
		}
		resp, err := in.cfg.Client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET answered %s", resp.Status)
		}
		return resp.Body, resp.ContentLength, nil
	case "", "file":
		dir := in.cfg.BaseURL
		if u.Scheme == "file" {
			dir = u.Path
		}
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(file)))
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, fi.Size(), nil
	}
	return nil, 0, fmt.Errorf("base URL %s: not http(s), file:// or a folder", in.cfg.BaseURL)
}
