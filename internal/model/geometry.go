package model

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Geometry says what is done to the voxel grid before the model sees it. The
// labels are always mapped back to the series' own grid (nearest neighbour)
// before the SEG is written.
type Geometry struct {
	// Orientation reorients the volume so that the model's D, H and W axes
	// point towards the three letters, e.g. LIA (D runs to the Left, H to
	// Inferior, W to Anterior), RAS or LPS: one of L/R, one of A/P and one of
	// S/I, in any order. Each axis becomes the series axis nearest to it, so
	// this permutes and flips voxels without interpolation. Empty: D, H, W
	// are the series' slices, rows and columns.
	Orientation string `yaml:"orientation,omitempty"`
	// Spacing resamples to this voxel size in mm along D, H and W
	// (trilinear), keeping the volume's centre and extent. Empty: keep.
	Spacing []float64 `yaml:"spacing,omitempty"`
	// Conform resamples the way FreeSurfer's mri_convert --conform does; it
	// replaces Orientation and Spacing.
	Conform *Conform `yaml:"conform,omitempty"`
	// Crop runs the model on the foreground's bounding box only and pastes
	// the result back (background elsewhere).
	Crop *Crop `yaml:"crop,omitempty"`
}

// Conform is FreeSurfer's conformed space: a cube of Size voxels of
// VoxelSize mm in Orientation, whose voxel (Size/2, Size/2, Size/2) sits on
// the series' centre (its voxel (Cols/2, Rows/2, Depth/2), as FreeSurfer's
// c_ras), filled by trilinear interpolation (0 outside the series).
// Written as `conform: true` for the defaults or as a mapping.
type Conform struct {
	// Size in voxels along each axis. Default 256.
	Size int `yaml:"size,omitempty"`
	// VoxelSize in mm. Default 1.
	VoxelSize float64 `yaml:"voxel_size,omitempty"`
	// Orientation of D, H, W. Default LIA (FreeSurfer's).
	Orientation string `yaml:"orientation,omitempty"`
	// Scale is robust255 (default: FreeSurfer's uint8 scaling, whose range
	// is taken from the series before resampling) or none.
	Scale IntensityMethod `yaml:"scale,omitempty"`
}

// UnmarshalYAML accepts `true` for the defaults, or a mapping with only the
// fields above.
func (c *Conform) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var on bool
		if err := n.Decode(&on); err != nil || !on {
			return fmt.Errorf("line %d: conform is true or a mapping (size, voxel_size, orientation, scale)", n.Line)
		}
		*c = Conform{}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: conform is true or a mapping", n.Line)
	}
	known := map[string]bool{"size": true, "voxel_size": true, "orientation": true, "scale": true}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !known[k] {
			return fmt.Errorf("line %d: field %s not found in type model.Conform", n.Content[i].Line, k)
		}
	}
	type plain Conform
	return n.Decode((*plain)(c))
}

// Crop is the crop to the foreground.
type Crop struct {
	// AutoThreshold: the foreground is the voxels above AutoThreshold times
	// the maximum of the normalised input, in [0, 1). 0 means every voxel
	// above 0.
	AutoThreshold float64 `yaml:"auto_threshold"`
	// Padding in voxels added on every side of the foreground's bounding box
	// (within the volume). Default 0.
	Padding int `yaml:"padding,omitempty"`
}

func (c *Conform) setDefaults() {
	if c.Size == 0 {
		c.Size = 256
	}
	if c.VoxelSize == 0 {
		c.VoxelSize = 1
	}
	if c.Orientation == "" {
		c.Orientation = "LIA"
	}
	if c.Scale == "" {
		c.Scale = IntensityRobust255
	}
}

// ValidOrientation checks a three-letter orientation code such as LIA.
func ValidOrientation(code string) error {
	if len(code) != 3 {
		return fmt.Errorf("%q is not three letters such as LIA, RAS or LPS", code)
	}
	seen := map[byte]bool{}
	for _, c := range []byte(strings.ToUpper(code)) {
		var axis byte
		switch c {
		case 'L', 'R':
			axis = 'x'
		case 'A', 'P':
			axis = 'y'
		case 'S', 'I':
			axis = 'z'
		default:
			return fmt.Errorf("%q: %c is not one of L, R, A, P, S, I", code, c)
		}
		if seen[axis] {
			return fmt.Errorf("%q names the same axis twice (one of L/R, one of A/P, one of S/I)", code)
		}
		seen[axis] = true
	}
	return nil
}

func (g *Geometry) validate(bad func(field, format string, args ...any)) {
	if g.Orientation != "" {
		if err := ValidOrientation(g.Orientation); err != nil {
			bad("preprocess.geometry.orientation", "%v", err)
		}
	}
	if g.Spacing != nil {
		if len(g.Spacing) != 3 {
			bad("preprocess.geometry.spacing", "want 3 values [D, H, W] in mm, got %d", len(g.Spacing))
		}
		for _, s := range g.Spacing {
			if !(s > 0) || !isFinite(s) {
				bad("preprocess.geometry.spacing", "%v is not a positive size in mm", s)
				break
			}
		}
	}
	if c := g.Conform; c != nil {
		if g.Orientation != "" || g.Spacing != nil {
			bad("preprocess.geometry.conform", "replaces orientation and spacing: give one or the other")
		}
		if c.Size < 1 || c.Size > 1024 {
			bad("preprocess.geometry.conform.size", "%d is not in 1..1024", c.Size)
		}
		if !(c.VoxelSize > 0) || !isFinite(c.VoxelSize) {
			bad("preprocess.geometry.conform.voxel_size", "%v is not a positive size in mm", c.VoxelSize)
		}
		if err := ValidOrientation(c.Orientation); err != nil {
			bad("preprocess.geometry.conform.orientation", "%v", err)
		}
		if c.Scale != IntensityRobust255 && c.Scale != IntensityNone {
			bad("preprocess.geometry.conform.scale", "%q is not one of robust255, none", c.Scale)
		}
	}
	if c := g.Crop; c != nil {
		if !(c.AutoThreshold >= 0 && c.AutoThreshold < 1) {
			bad("preprocess.geometry.crop.auto_threshold", "%v is not in [0, 1)", c.AutoThreshold)
		}
		if c.Padding < 0 {
			bad("preprocess.geometry.crop.padding", "%d is negative", c.Padding)
		}
	}
}
