package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/model"
)

// modelsCmd dispatches `segbridge models`: install, init, check, or list
// (the default).
func modelsCmd(ctx context.Context, logger zerolog.Logger, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "install":
			return modelsInstall(ctx, cfg, args[1:], stdout, stderr)
		case "init":
			return modelsInit(args[1:], stdout, stderr)
		case "check":
			return modelsCheck(ctx, logger, cfg, args[1:], stdout)
		case "list":
			args = args[1:]
		}
	}
	return modelsList(cfg, args, stdout)
}

// modelsList lists the configured models (SEGBRIDGE_MODELS_DIR, MODEL_PATH,
// or those installed in the default folder), or the manifests and folders
// named as arguments, and fails naming the file and field of every manifest
// that does not load.
func modelsList(cfg *config.Config, args []string, stdout io.Writer) error {
	var models []*model.Model
	if len(args) == 0 {
		var err error
		if models, err = loadModels(cfg); err != nil {
			return err
		}
	} else {
		var errs []error
		opt := model.WithFileDirs(cfg.ModelFiles...)
		for _, a := range args {
			fi, err := os.Stat(a)
			switch {
			case err != nil:
				errs = append(errs, err)
			case fi.IsDir():
				ms, err := model.LoadDir(a, opt)
				if err != nil {
					errs = append(errs, err)
				}
				models = append(models, ms...)
			default:
				m, err := model.Load(a, opt)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				models = append(models, m)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tAPPLIES TO\tMODE\tGEOMETRY\tLEARNED\tSEGMENTS\tFILE")
	for _, m := range models {
		learned := "no"
		if m.Learned != nil && *m.Learned {
			learned = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Name, m.Version, appliesTo(m),
			m.Input.Mode, geometry(m), learned, len(m.Segments()), m.ONNXPath)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d model(s) OK\n", len(models))
	return nil
}

func appliesTo(m *model.Model) string {
	var parts []string
	if len(m.AppliesTo.Modalities) > 0 {
		parts = append(parts, strings.Join(m.AppliesTo.Modalities, ","))
	} else {
		parts = append(parts, "any")
	}
	if m.AppliesTo.SeriesDescription != "" {
		parts = append(parts, fmt.Sprintf("desc~%q", m.AppliesTo.SeriesDescription))
	}
	if len(m.AppliesTo.BodyParts) > 0 {
		parts = append(parts, "body:"+strings.Join(m.AppliesTo.BodyParts, ","))
	}
	return strings.Join(parts, " ")
}

func geometry(m *model.Model) string {
	g := m.Preprocess.Geometry
	var parts []string
	switch {
	case g.Conform != nil:
		parts = append(parts, fmt.Sprintf("conform %d^3 %gmm %s", g.Conform.Size, g.Conform.VoxelSize, g.Conform.Orientation))
	default:
		if g.Orientation != "" {
			parts = append(parts, g.Orientation)
		}
		if g.Spacing != nil {
			parts = append(parts, fmt.Sprintf("%vmm", g.Spacing))
		}
	}
	if g.Crop != nil {
		parts = append(parts, fmt.Sprintf("crop>%g+%d", g.Crop.AutoThreshold, g.Crop.Padding))
	}
	if len(parts) == 0 {
		return "native"
	}
	return strings.Join(parts, ", ")
}
