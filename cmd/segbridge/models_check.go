package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/modelcheck"
)

// modelsCheck runs models once on a synthetic volume and says what each was
// fed and gave: `segbridge models check [NAME|manifest.yaml|DIR ...]` (the
// configured models when none is named).
func modelsCheck(ctx context.Context, logger zerolog.Logger, cfg *config.Config, args []string, stdout io.Writer) error {
	var models []*model.Model
	if len(args) == 0 {
		ms, err := loadModels(cfg)
		if err != nil {
			return err
		}
		models = ms
	}
	for _, a := range args {
		if fi, err := os.Stat(a); err == nil && fi.IsDir() {
			ms, err := model.LoadDir(a, model.WithFileDirs(cfg.ModelFiles...))
			if err != nil {
				return err
			}
			models = append(models, ms...)
			continue
		}
		m, err := pickModel(cfg, a)
		if err != nil {
			return err
		}
		models = append(models, m)
	}
	if cfg.ORTLibrary == "" {
		return errors.New("SEGBRIDGE_ORT_LIB is not set and .deps/onnxruntime/libonnxruntime.so.1 is absent: run make deps")
	}
	rt, err := inference.NewRuntime(logger, runtimeConfig(cfg))
	if err != nil {
		return err
	}
	defer rt.Close()
	var failed []string
	for _, m := range models {
		fmt.Fprintf(stdout, "model %s %s (%s), %s mode, on %s\n", m.Name, m.Version, m.ONNXPath, m.Input.Mode, rt.Device())
		rep, err := modelcheck.Run(ctx, rt, m)
		if err != nil {
			fmt.Fprintf(stdout, "  FAILED: %v\n", err)
			failed = append(failed, m.Name)
			continue
		}
		fmt.Fprint(stdout, rep.Write(m))
		fmt.Fprintln(stdout, "  OK")
	}
	if len(failed) > 0 {
		return fmt.Errorf("models check: %s failed", strings.Join(failed, ", "))
	}
	return nil
}
