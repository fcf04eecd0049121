package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/install"
	"github.com/segbridge/segbridge/models"
)

// modelsInstall installs published pretrained models:
// `segbridge models install brainchop [MODEL ...] [--url URL] [--dir DIR]`.
func modelsInstall(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("models install", flag.ContinueOnError)
	fset.SetOutput(stderr)
	base := fset.String("url", cfg.ModelsURL, "where the published files are: an http(s) URL or a local folder (SEGBRIDGE_MODELS_URL)")
	dir := fset.String("dir", "", "the model folder to install into (default SEGBRIDGE_MODELS_DIR, else "+orNone(cfg.DefaultModelsDir)+")")
	pos, err := parseInterleaved(fset, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("usage: segbridge models install brainchop [MODEL ...] [--url URL] [--dir DIR]")
	}
	src, err := install.Load(models.FS, pos[0])
	if err != nil {
		return err
	}
	if *base == "" {
		return fmt.Errorf("set SEGBRIDGE_MODELS_URL (or --url) to where %s's files are published: %s", src.Name, src.Origin)
	}
	target := *dir
	if target == "" {
		target = cfg.ModelsDir
	}
	if target == "" {
		target = cfg.DefaultModelsDir
	}
	if target == "" {
		return errors.New("no model folder: set SEGBRIDGE_MODELS_DIR, XDG_DATA_HOME or HOME, or give --dir")
	}
	bar := newProgressBar(stderr)
	bar.prefix = "install"
	defer bar.finish()
	installed, err := install.Install(ctx, src, pos[1:], install.Config{
		BaseURL: *base,
		Dir:     target,
		Version: Version,
		Progress: func(p install.Progress) {
			f := 0.0
			if p.Total > 0 {
				f = float64(p.Done) / float64(p.Total)
			}
			bar.progress(fmt.Sprintf("%d/%d %s", p.N, p.Of, p.File), f)
		},
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("install %s (nothing was installed): %w", src.Name, err)
	}
	for _, m := range installed {
		fmt.Fprintf(stdout, "installed %s: %s (%d KB), %s\n", m.Name, m.ONNX, (m.Bytes+512)/1024, m.Manifest)
	}
	switch {
	case cfg.ModelPath != "" && cfg.ModelsDir == "":
		fmt.Fprintf(stdout, "MODEL_PATH is set, so serve, worker and segment load only %s: unset it, or set SEGBRIDGE_MODELS_DIR=%s\n", cfg.ModelPath, target)
	case target != cfg.ModelsFolder():
		fmt.Fprintf(stdout, "serve, worker and segment load models from %s: set SEGBRIDGE_MODELS_DIR=%s to use these\n", orNone(cfg.ModelsFolder()), target)
	default:
		fmt.Fprintf(stdout, "%d model(s) installed in %s, where serve, worker and segment find them\n", len(installed), target)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
