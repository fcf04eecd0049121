package main

import (
	"archive/zip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/codec"
	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

// segmentCmd segments one series from a folder or zip of DICOM files into a
// SEG file, with no Orthanc and no queue.
func segmentCmd(ctx context.Context, logger zerolog.Logger, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("segment", flag.ContinueOnError)
	fset.SetOutput(stderr)
	modelArg := fset.String("model", "", "model name (from SEGBRIDGE_MODELS_DIR / MODEL_PATH) or path to a manifest")
	out := fset.String("o", "seg.dcm", "output SEG file")
	// Accept flags before and after the input path.
	var input string
	for len(args) > 0 {
		if err := fset.Parse(args); err != nil {
			return err
		}
		args = fset.Args()
		if len(args) > 0 {
			if input != "" {
				return errors.New("segment: give one input folder or zip")
			}
			input, args = args[0], args[1:]
		}
	}
	if input == "" {
		return errors.New("usage: segbridge segment <folder|zip> [--model NAME|manifest.yaml] [-o seg.dcm]")
	}
	m, err := pickModel(cfg, *modelArg)
	if err != nil {
		return err
	}
	if cfg.ORTLibrary == "" {
		return errors.New("SEGBRIDGE_ORT_LIB is not set and .deps/onnxruntime/libonnxruntime.so.1 is absent: run make deps")
	}
	bar := newProgressBar(stderr)
	var timings []stageTime
	stage := func(name string) func() {
		bar.stage(name)
		start := time.Now()
		return func() { timings = append(timings, stageTime{name, time.Since(start)}) }
	}
	total := time.Now()

	done := stage("read")
	files, err := readInputs(input)
	if err != nil {
		return err
	}
	pool, err := codec.NewPool(logger, codec.Config{})
	if err != nil {
		return err
	}
	defer pool.Close()
	parser := volume.Parser{Decoder: pool}
	instances := make([]*volume.Instance, 0, len(files))
	for name, data := range files {
		inst, err := parser.ParseInstance(ctx, data)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		instances = append(instances, inst)
	}
	done()

	done = stage("volume")
	vol, err := volume.Assemble(instances, volume.Limits{})
	if err != nil {
		return err
	}
	instances, files = nil, nil // the volume holds what is needed
	done()
	if ok, why := m.Matches(model.SeriesInfo{Modality: vol.Modality}); !ok {
		fmt.Fprintf(stderr, "warning: model %s does not apply to this series (%s); running it as asked\n", m.Name, why)
	}

	done = stage("load model")
	rt, err := inference.NewRuntime(logger, runtimeConfig(cfg))
	if err != nil {
		return err
	}
	defer rt.Close()
	done()

	start := time.Now()
	res, err := rt.SegmentWith(ctx, m, vol, inference.SegmentOptions{Progress: bar.progress})
	if err != nil {
		bar.finish()
		return err
	}
	for _, st := range res.Steps {
		timings = append(timings, stageTime{"  " + st.Name, st.Duration})
	}
	timings = append(timings, stageTime{"model", time.Since(start)})

	done = stage("encode")
	seg, err := dicomseg.Encode(vol, res.Labels, m.Segments(), dicomseg.Options{
		SeriesDescription: "AI segmentation: " + m.Name,
		AlgorithmName:     m.Name,
		AlgorithmVersion:  m.Version,
		SoftwareVersions:  "segbridge " + Version,
	})
	if err != nil {
		bar.finish()
		return err
	}
	if err := os.WriteFile(*out, seg.Bytes, 0o644); err != nil {
		bar.finish()
		return fmt.Errorf("write %s: %w", *out, err)
	}
	done()
	bar.finish()

	fmt.Fprintf(stdout, "wrote %s: %d frames, %d segments, %dx%dx%d voxels, model %s %s on %s (model input [D,H,W] = %v)\n",
		*out, seg.Frames, len(seg.Segments), vol.Cols, vol.Rows, vol.Depth, m.Name, m.Version, rt.Device(), res.ModelShape)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, t := range timings {
		fmt.Fprintf(tw, "%s\t%.0f ms\t\n", t.name, ms(t.d))
	}
	fmt.Fprintf(tw, "total\t%.0f ms\t\n", ms(time.Since(total)))
	return tw.Flush()
}

type stageTime struct {
	name string
	d    time.Duration
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pickModel finds a model by name among the configured ones, or loads a
// manifest path.
func pickModel(cfg *config.Config, arg string) (*model.Model, error) {
	if strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") {
		return model.Load(arg, model.WithFileDirs(cfg.ModelFiles...))
	}
	models, err := loadModels(cfg)
	if err != nil {
		return nil, err
	}
	if arg == "" {
		if len(models) == 1 {
			return models[0], nil
		}
		return nil, errors.New("several models are configured: name one with --model")
	}
	for _, m := range models {
		if m.Name == arg {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no model named %q", arg)
}

// readInputs reads every file of a folder (recursively) or a zip archive.
// Files that are not DICOM are skipped by the caller's parser errors, so only
// plausible files are returned: those with the DICM preamble.
func readInputs(path string) (map[string][]byte, error) {
	files := map[string][]byte{}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		zr, err := zip.OpenReader(path)
		if err != nil {
			return nil, fmt.Errorf("%s is neither a folder nor a zip: %w", path, err)
		}
		defer zr.Close()
		for _, f := range zr.File {
			if f.FileInfo().IsDir() {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			b, err := io.ReadAll(io.LimitReader(rc, 1<<30))
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			if isDICOM(b) {
				files[f.Name] = b
			}
		}
	} else {
		err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if isDICOM(b) {
				files[p] = b
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no DICOM files", path)
	}
	return files, nil
}

func isDICOM(b []byte) bool {
	return len(b) > 132 && string(b[128:132]) == "DICM"
}
