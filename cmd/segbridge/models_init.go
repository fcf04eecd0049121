package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/onnx"
)

// modelsInit writes a starter manifest for an ONNX file:
// `segbridge models init model.onnx [-o manifest.yaml] [--force]`.
func modelsInit(args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("models init", flag.ContinueOnError)
	fset.SetOutput(stderr)
	out := fset.String("o", "", "the manifest to write (default: beside the model, with .yaml)")
	force := fset.Bool("force", false, "overwrite an existing manifest")
	pos, err := parseInterleaved(fset, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: segbridge models init model.onnx [-o manifest.yaml] [--force]")
	}
	src := pos[0]
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	g, err := onnx.Decode(data)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	path := *out
	if path == "" {
		path = strings.TrimSuffix(src, filepath.Ext(src)) + ".yaml"
	}
	// The manifest names its model relative to itself when beside it, so
	// the two can be moved together.
	file, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if absOut, err := filepath.Abs(path); err == nil && filepath.Dir(absOut) == filepath.Dir(file) {
		file = filepath.Base(file)
	}
	text, err := model.Starter(file, g)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: give -o another file, or --force to overwrite it", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	m, err := model.Load(path)
	if err != nil {
		return fmt.Errorf("the starter manifest does not load (please report this): %w", err)
	}
	ins := g.Graph.DataInputs()
	fmt.Fprintf(stdout, "wrote %s for %s: input %q %s, output %q %s, mode %s, %d segment(s)\n", path, src,
		ins[0].Name, onnx.ShapeString(ins[0].Shape), g.Graph.Outputs[0].Name, onnx.ShapeString(g.Graph.Outputs[0].Shape),
		m.Input.Mode, len(m.Segments()))
	fmt.Fprintf(stdout, "edit the lines marked %q, then run: segbridge models check %s\n", model.ChooseMark, path)
	return nil
}
