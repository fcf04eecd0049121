// Command segbridge segments the MR series of an Orthanc PACS with ONNX models
// and stores the results in Orthanc as DICOM SEG series.
//
//	segbridge serve     bridge + embedded queue + in-process workers
//	segbridge worker    a worker on another machine, connecting out to NATS
//	segbridge segment   one series from a folder to a SEG file, offline
//	segbridge models    list, check, install and start model manifests
//	segbridge nkey      make a NATS user key for a cluster
//	segbridge version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/segbridge/segbridge/internal/codec"
	"github.com/segbridge/segbridge/internal/config"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

const usage = `segbridge — AI segmentation for Orthanc, written back as DICOM SEG

Usage:
  segbridge serve                      run the bridge, the embedded queue and workers
  segbridge worker                     run workers against a remote queue (SEGBRIDGE_NATS_URL)
  segbridge segment DIR -o seg.dcm     segment one series from a folder, no Orthanc needed
  segbridge models [list] [FILE|DIR]   list and check the model manifests
  segbridge models install brainchop   download, check and convert the pretrained brainchop models
  segbridge models init model.onnx     write a starter manifest for your own model
  segbridge models check [NAME|FILE]   run models once on a synthetic volume: what they are fed and give
  segbridge nkey SEED_FILE             make a NATS user key (seed to the file, public key printed)
  segbridge version                    print the version

Configuration is read from the environment; see README.md.
`

func main() {
	// A JPEG 2000 decoder child is this binary re-executed; it must become
	// the child before anything else runs.
	codec.RunIfChild()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "segbridge:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "segbridge", Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "nkey":
		return nkeyCmd(args, stdout)
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	logger := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings {
		logger.Warn().Msg(w)
	}
	switch cmd {
	case "serve":
		return serve(ctx, logger, cfg)
	case "worker":
		return workerCmd(ctx, logger, cfg)
	case "segment":
		return segmentCmd(ctx, logger, cfg, args, stdout, stderr)
	case "models":
		return modelsCmd(ctx, logger, cfg, args, stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func newLogger(cfg *config.Config, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(strings.ToLower(cfg.LogLevel))
	if err != nil || cfg.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "console"
		}
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// parseInterleaved parses flags given before, between and after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fset *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fset.Parse(args); err != nil {
			return nil, err
		}
		args = fset.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}
