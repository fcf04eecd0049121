package model

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/segbridge/segbridge/internal/dicomseg"
)

// SegmentsFrom reads segment descriptions from a colormap file.
type SegmentsFrom struct {
	// Colormap is a brainchop colormap JSON file: {"labels": [...], "R": [...],
	// "G": [...], "B": [...]}, entry i describing label i. Entry 0 is the
	// background and is skipped. Resolved like File. Required.
	Colormap string `yaml:"colormap"`
	// Category and Type are the codes every segment read from the colormap
	// gets (a colormap has names, not codes). Both required.
	Category dicomseg.Code `yaml:"category"`
	Type     dicomseg.Code `yaml:"type"`
}

// colormap is brainchop's colormap JSON.
type colormap struct {
	Labels  []string `json:"labels"`
	R, G, B []int
}

// maxColormapSize bounds what readColormap reads.
const maxColormapSize = 4 << 20

// colormapSegments reads a colormap file into segments 1..len(labels)-1.
func colormapSegments(path string, from *SegmentsFrom) ([]dicomseg.Segment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxColormapSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxColormapSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxColormapSize)
	}
	var cm colormap
	if err := json.Unmarshal(data, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	n := len(cm.Labels)
	switch {
	case n < 2:
		return nil, fmt.Errorf("%s: want background and at least one label, got %d labels", path, n)
	case n > 256:
		return nil, fmt.Errorf("%s: %d labels, at most 256 (background and 1..255) fit a SEG", path, n)
	case len(cm.R) != n || len(cm.G) != n || len(cm.B) != n:
		return nil, fmt.Errorf("%s: %d labels but %d/%d/%d R/G/B values", path, n, len(cm.R), len(cm.G), len(cm.B))
	}
	segs := make([]dicomseg.Segment, 0, n-1)
	for i := 1; i < n; i++ {
		var rgb [3]uint8
		for c, v := range []int{cm.R[i], cm.G[i], cm.B[i]} {
			if v < 0 || v > 255 {
				return nil, fmt.Errorf("%s: label %d has colour value %d outside 0..255", path, i, v)
			}
			rgb[c] = uint8(v)
		}
		name := strings.TrimSpace(cm.Labels[i])
		if name == "" {
			name = fmt.Sprintf("Label %d", i)
		}
		segs = append(segs, dicomseg.Segment{Label: i, Name: name, Category: from.Category, Type: from.Type, RGB: rgb})
	}
	return segs, nil
}
