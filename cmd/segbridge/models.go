package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/segbridge/segbridge/internal/config"
)

// modelsCmd lists the configured models, or fails naming what is wrong with one.
func modelsCmd(cfg *config.Config, args []string, stdout io.Writer) error {
	models, err := loadModels(cfg)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tMODALITIES\tMODE\tLEARNED\tSEGMENTS\tFILE")
	for _, m := range models {
		learned := "no"
		if m.Learned != nil && *m.Learned {
			learned = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Name, m.Version, strings.Join(m.AppliesTo.Modalities, ","),
			m.Input.Mode, learned, len(m.Segments()), m.ONNXPath)
	}
	return tw.Flush()
}
