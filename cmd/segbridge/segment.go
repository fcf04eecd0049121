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
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/codec"
	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/pipeline"
	"github.com/segbridge/segbridge/internal/volume"
)

// segmentCmd segments one series from a folder or zip of DICOM files into a
// SEG file, with no Orthanc and no queue.
func segmentCmd(ctx context.Context, logger zerolog.Logger, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("segment", flag.ContinueOnError)
	fset.SetOutput(stderr)
	modelArg := fset.String("model", "", "model name (from SEGBRIDGE_MODELS_DIR / MODEL_PATH) or path to a manifest")
	out := fset.String("o", "seg.dcm", "output SEG file")
	force := fset.Bool("force", false, "run the model even on a series its manifest's rules refuse")
	seriesUID := fset.String("series", "", "SeriesInstanceUID of the series to segment, when the input holds several")
	repeat := fset.Int("repeat", 1, "run the pipeline this many times in one process and report the last run: times a warm session, as a worker's later jobs run")
	// Accept flags before and after the input path.
	pos, err := parseInterleaved(fset, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 1:
		return errors.New("segment: give one input folder or zip")
	case len(pos) == 0 || pos[0] == "":
		return errors.New("usage: segbridge segment <folder|zip> [--model NAME|manifest.yaml] [--series UID] [-o seg.dcm] [--force]")
	}
	input := pos[0]
	m, err := pickModel(cfg, *modelArg)
	if err != nil {
		return err
	}
	if cfg.ORTLibrary == "" {
		return errors.New("SEGBRIDGE_ORT_LIB is not set and .deps/onnxruntime/libonnxruntime.so.1 is absent: run make deps")
	}
	bar := newProgressBar(stderr)
	defer bar.finish()
	t := pipeline.NewTimer(nil, bar.progress)

	done := t.Stage("read")
	files, err := readInputs(input)
	if err != nil {
		return err
	}
	files, err = pickSeries(files, *seriesUID, stderr)
	if err != nil {
		return fmt.Errorf("%s: %w", input, err)
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
	files = nil
	done()
	done = t.Stage("load model")
	rt, err := inference.NewRuntime(logger, runtimeConfig(cfg))
	if err != nil {
		return err
	}
	defer rt.Close()
	pl, err := pipeline.New(rt, pipeline.Config{Limits: limits(cfg), SoftwareVersions: "segbridge " + Version})
	if err != nil {
		return err
	}
	done()

	if *repeat < 1 {
		return errors.New("segment: --repeat must be at least 1")
	}
	var res *pipeline.Output
	for i := 1; i <= *repeat; i++ {
		if i > 1 {
			// A fresh timer per run, so that the last run's total is that
			// run's alone; read and load model happened once, before.
			prev := t.Timings()
			t = pipeline.NewTimer(nil, bar.progress)
			for _, st := range []string{"read", "load model"} {
				t.Set(st, time.Duration(prev[st]*float64(time.Millisecond)))
			}
		}
		res, err = pl.Run(ctx, pipeline.Input{Model: m, Instances: instances, Force: *force}, t)
		if na := (*pipeline.NotApplicable)(nil); errors.As(err, &na) {
			return fmt.Errorf("%s (--force runs it anyway)", na.Reason)
		}
		if err != nil {
			return err
		}
		if *repeat > 1 {
			tm := t.Timings()
			fmt.Fprintf(stdout, "run %d of %d: preprocess %.0f ms, inference %.0f ms, postprocess %.0f ms, encode %.0f ms\n",
				i, *repeat, tm["preprocess"], tm["inference"], tm["postprocess"], tm["encode"])
		}
	}
	done = t.Stage("write")
	if err := os.WriteFile(*out, res.SEG, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	done()
	t.Total()
	bar.finish()

	vol := res.Volume
	fmt.Fprintf(stdout, "wrote %s: %d frames, %d segments, %dx%dx%d voxels, model %s %s on %s\n",
		*out, res.Frames, len(m.Segments()), vol.Cols, vol.Rows, vol.Depth, m.Name, m.Version, rt.Device())
	if segs := m.Segments(); len(segs) <= 20 {
		for _, sg := range segs {
			fmt.Fprintf(stdout, "  label %d %s: %.1f mL\n", sg.Label, sg.Name, res.VolumeML[sg.Label])
		}
	}
	timings := t.Timings()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, name := range []string{"read", "load model", "volume", "preprocess", "inference", "postprocess", "encode", "write"} {
		fmt.Fprintf(tw, "%s\t%.0f ms\t\n", name, timings[name])
		if name == "postprocess" {
			for _, st := range res.Steps {
				fmt.Fprintf(tw, "  %s\t%.0f ms\t\n", st.Name, pipeline.Millis(st.Duration))
			}
		}
	}
	fmt.Fprintf(tw, "total\t%.0f ms\t\n", timings["total"])
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	return nil
}

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

// pickSeries keeps the files of one image series: the one named, or the
// only one there is. A folder from a CD or a PACS export holds a DICOMDIR,
// reports and often several series; files that are not images are left out
// (and counted on w), and several image series without a choice are an
// error that lists them.
func pickSeries(files map[string][]byte, uid string, w io.Writer) (map[string][]byte, error) {
	type series struct {
		uid, modality, description string
		number                     int
		files                      map[string][]byte
	}
	bySeries := map[string]*series{}
	skipped := map[string]int{}
	for name, data := range files {
		fi, err := volume.ReadFileInfo(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !fi.Image {
			skipped[volume.SOPClassName(fi.SOPClassUID)]++
			continue
		}
		s := bySeries[fi.SeriesInstanceUID]
		if s == nil {
			s = &series{uid: fi.SeriesInstanceUID, modality: fi.Modality, description: fi.SeriesDescription,
				number: fi.SeriesNumber, files: map[string][]byte{}}
			bySeries[fi.SeriesInstanceUID] = s
		}
		s.files[name] = data
	}
	if len(skipped) > 0 {
		kinds := make([]string, 0, len(skipped))
		for k, n := range skipped {
			kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(kinds)
		fmt.Fprintf(w, "segment: left out files that are not images: %s\n", strings.Join(kinds, ", "))
	}
	if uid != "" {
		if s := bySeries[uid]; s != nil {
			return s.files, nil
		}
	} else if len(bySeries) == 1 {
		for _, s := range bySeries {
			return s.files, nil
		}
	}
	if len(bySeries) == 0 {
		return nil, errors.New("no image files")
	}
	list := make([]*series, 0, len(bySeries))
	for _, s := range bySeries {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool {
		return list[i].number < list[j].number || (list[i].number == list[j].number && list[i].uid < list[j].uid)
	})
	var b strings.Builder
	if uid != "" {
		fmt.Fprintf(&b, "no image series %s here; the image series are:", uid)
	} else {
		fmt.Fprintf(&b, "%d image series here; choose one with --series:", len(list))
	}
	for _, s := range list {
		fmt.Fprintf(&b, "\n  %s  #%d %s %q, %d files", s.uid, s.number, s.modality, s.description, len(s.files))
	}
	return nil, errors.New(b.String())
}

func isDICOM(b []byte) bool {
	return len(b) > 132 && string(b[128:132]) == "DICM"
}
