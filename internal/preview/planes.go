// Package preview draws a segmentation on its source so that people see it
// where they already look: Planes renders the three orthogonal planes through
// the mask's centre, mask in each segment's colour, as one image (the status
// page's preview), and EncodeSeries writes the source slices with the mask
// burned in as a Secondary Capture series, flagged derived and not for
// diagnosis, that any PACS viewer shows.
package preview

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"

	"github.com/segbridge/segbridge/internal/checked"
	"github.com/segbridge/segbridge/internal/volume"
)

// Segment is how one label value is drawn.
type Segment struct {
	// Label is the voxel value of the segment in the label volume.
	Label uint8
	// Name is what a legend calls it.
	Name string
	// RGB is its colour.
	RGB [3]uint8
}

// Tint is the weight of a segment's colour over the grey source inside the
// mask; the mask's outline is drawn in the colour itself.
const Tint = 0.45

// MaxPanel is the largest width or height of one plane in Planes, in pixels:
// the length of the volume's longest side.
const MaxPanel = 320

// gap is the black space between two planes, in pixels.
const gap = 8

// Axis is one direction of a plane's image: which volume axis it runs along
// (0 i/columns, 1 j/rows, 2 k/slices), how many voxels that axis has, and
// whether the voxel index decreases as the image coordinate increases.
type Axis struct {
	Volume int  `json:"axis"`
	N      int  `json:"n"`
	Flip   bool `json:"flip"`
}

// index is the voxel index along a of image coordinate p of size pixels.
func (a Axis) index(p, size int) int {
	i := p * a.N / size
	if a.Flip {
		i = a.N - 1 - i
	}
	return i
}

// Panel is one plane of a Planes image and how its pixels map to voxels:
// pixel (x, y) of the image with X <= x < X+Width, Y <= y < Y+Height is
// voxel Fixed.Index along axis Fixed.Axis, Horizontal's index of x-X over
// Width, and Vertical's index of y-Y over Height (nearest neighbour:
// floor(p*N/size), reversed when Flip).
type Panel struct {
	// Name is "axial", "coronal" or "sagittal".
	Name          string  `json:"name"`
	X             int     `json:"x"`
	Y             int     `json:"y"`
	Width         int     `json:"width"`
	Height        int     `json:"height"`
	Fixed         Fixed   `json:"fixed"`
	Horizontal    Axis    `json:"horizontal"`
	Vertical      Axis    `json:"vertical"`
	MaskedPixels  int     `json:"masked_pixels"`
	Orientation   string  `json:"orientation"`
	MillimetrePer float64 `json:"mm_per_pixel"`
}

// Fixed is the voxel plane a panel shows: index Index along volume axis Axis.
type Fixed struct {
	Axis  int `json:"axis"`
	Index int `json:"index"`
}

// Voxel returns the voxel (i, j, k) that pixel (x, y) of the whole image
// shows; ok is false outside the panel.
func (p Panel) Voxel(x, y int) (v [3]int, ok bool) {
	x, y = x-p.X, y-p.Y
	if x < 0 || y < 0 || x >= p.Width || y >= p.Height {
		return v, false
	}
	v[p.Fixed.Axis] = p.Fixed.Index
	v[p.Horizontal.Volume] = p.Horizontal.index(x, p.Width)
	v[p.Vertical.Volume] = p.Vertical.index(y, p.Height)
	return v, true
}

// Layout says where Planes put each plane, and the mask's centre (voxel
// indices) they pass through.
type Layout struct {
	Width  int     `json:"width"`
	Height int     `json:"height"`
	Centre [3]int  `json:"centre"`
	Panels []Panel `json:"panels"`
}

// ErrEmpty is returned by Planes when no voxel holds a drawn segment: there
// is no mask to centre the planes on.
var ErrEmpty = errors.New("the segmentation is empty")

// Planes renders the axial, coronal and sagittal planes of v through the
// centre of the voxels whose label is one of segs, side by side in that
// order, each at its physical aspect (one pixel is the same length in every
// plane) and in radiological orientation: axial and coronal with the
// patient's right on the image's left, axial with anterior up, coronal and
// sagittal with superior up, sagittal with anterior on the left. The volume
// axis nearest each patient axis stands for it, so oblique series are shown
// in their own grid, unresampled. The source is grey, windowed to its 1st to
// 99.5th percentile; inside the mask a segment's colour is laid over it
// (Tint) and the mask's outline is drawn in the colour itself, so the only
// pixels that are not grey are the mask's.
func Planes(v *volume.Volume, labels []uint8, segs []Segment) (*image.RGBA, *Layout, error) {
	if err := checkInput(v, labels); err != nil {
		return nil, nil, err
	}
	pal := palette(segs)
	centre, ok := maskCentre(v, labels, pal)
	if !ok {
		return nil, nil, ErrEmpty
	}
	axisOf, sign := patientAxes(v.Direction)
	// A plane's axis runs along patient axis p; want is the direction of p
	// that increasing image coordinates show (radiological convention).
	along := func(p int, want float64) Axis {
		a := axisOf[p]
		return Axis{Volume: a, N: size(v, a), Flip: sign[p]*want < 0}
	}
	specs := []struct {
		name        string
		fixed       int // patient axis held fixed
		h, v        Axis
		orientation string
	}{
		{"axial", 2, along(0, +1), along(1, +1), "R|L A|P"},
		{"coronal", 1, along(0, +1), along(2, -1), "R|L S|I"},
		{"sagittal", 0, along(1, +1), along(2, -1), "A|P S|I"},
	}
	// The longest side of the volume spans MaxPanel pixels: a small or
	// coarse series is drawn as large as a fine one.
	extent := 0.0
	for a := range 3 {
		extent = max(extent, float64(size(v, a))*v.Spacing[a])
	}
	mmPerPixel := extent / MaxPanel
	lay := &Layout{Centre: centre}
	x := 0
	for _, s := range specs {
		fa := axisOf[s.fixed]
		p := Panel{
			Name: s.name, X: x, Y: 0,
			Width:         max(1, int(math.Round(float64(s.h.N)*v.Spacing[s.h.Volume]/mmPerPixel))),
			Height:        max(1, int(math.Round(float64(s.v.N)*v.Spacing[s.v.Volume]/mmPerPixel))),
			Fixed:         Fixed{Axis: fa, Index: centre[fa]},
			Horizontal:    s.h,
			Vertical:      s.v,
			Orientation:   s.orientation,
			MillimetrePer: mmPerPixel,
		}
		lay.Panels = append(lay.Panels, p)
		x += p.Width + gap
		lay.Height = max(lay.Height, p.Height)
	}
	lay.Width = x - gap
	img := image.NewRGBA(image.Rect(0, 0, lay.Width, lay.Height))
	for i := range img.Pix {
		img.Pix[i] = 0
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	win := window(v.Data)
	for i := range lay.Panels {
		p := &lay.Panels[i]
		p.MaskedPixels = drawPanel(img, v, labels, pal, win, p)
	}
	return img, lay, nil
}

func checkInput(v *volume.Volume, labels []uint8) error {
	if v == nil {
		return errors.New("preview: no volume")
	}
	n, ok := checked.Mul(v.Cols, v.Rows, v.Depth)
	if !ok || n == 0 || len(v.Data) != n || len(labels) != n {
		return fmt.Errorf("preview: %d voxels and %d labels for a %dx%dx%d volume", len(v.Data), len(labels), v.Cols, v.Rows, v.Depth)
	}
	for a, s := range v.Spacing {
		if !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("preview: spacing[%d] = %v", a, s)
		}
	}
	return nil
}

func size(v *volume.Volume, axis int) int {
	return [3]int{v.Cols, v.Rows, v.Depth}[axis]
}

// palette maps label values to colours; nil for labels not drawn.
func palette(segs []Segment) [256]*[3]uint8 {
	var pal [256]*[3]uint8
	for _, s := range segs {
		if s.Label != 0 {
			c := s.RGB
			pal[s.Label] = &c
		}
	}
	return pal
}

// maskCentre is the centroid of the drawn voxels, rounded to voxel indices.
func maskCentre(v *volume.Volume, labels []uint8, pal [256]*[3]uint8) ([3]int, bool) {
	var sum [3]float64
	n := 0
	plane := v.Cols * v.Rows
	for idx, l := range labels {
		if pal[l] == nil {
			continue
		}
		sum[0] += float64(idx % v.Cols)
		sum[1] += float64(idx / v.Cols % v.Rows)
		sum[2] += float64(idx / plane)
		n++
	}
	if n == 0 {
		return [3]int{}, false
	}
	var c [3]int
	for a := range 3 {
		c[a] = min(size(v, a)-1, int(math.Round(sum[a]/float64(n))))
	}
	return c, true
}

// patientAxes assigns each patient axis (0 x/left, 1 y/posterior, 2
// z/superior) the volume axis most nearly along it — the permutation with
// the largest sum of |direction cosines| — and the sign of that cosine.
func patientAxes(dir [3][3]float64) (axisOf [3]int, sign [3]float64) {
	perms := [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	best := -1.0
	for _, p := range perms {
		s := 0.0
		for axis, a := range p {
			s += math.Abs(dir[a][axis])
		}
		if s > best {
			best, axisOf = s, p
		}
	}
	for p, a := range axisOf {
		sign[p] = 1
		if dir[a][p] < 0 {
			sign[p] = -1
		}
	}
	return axisOf, sign
}

// window is the grey window: the 1st and 99.5th percentiles of a sample of
// the volume's values.
func window(data []float32) [2]float32 {
	step := max(1, len(data)/200000)
	sample := make([]float32, 0, len(data)/step+1)
	for i := 0; i < len(data); i += step {
		if x := data[i]; !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) {
			sample = append(sample, x)
		}
	}
	if len(sample) == 0 {
		return [2]float32{0, 1}
	}
	slices.Sort(sample)
	lo := sample[len(sample)/100]
	hi := sample[min(len(sample)-1, len(sample)*995/1000)]
	if hi <= lo {
		hi = lo + 1
	}
	return [2]float32{lo, hi}
}

func grey(x float32, win [2]float32) uint8 {
	g := (x - win[0]) / (win[1] - win[0])
	if !(g > 0) { // also NaN
		return 0
	}
	if g >= 1 {
		return 255
	}
	return uint8(g*255 + 0.5)
}

// drawPanel draws panel p of the planes into img and returns how many of its
// pixels lie in the mask.
func drawPanel(img *image.RGBA, v *volume.Volume, labels []uint8, pal [256]*[3]uint8, win [2]float32, p *Panel) int {
	w, h := p.Width, p.Height
	lab := make([]uint8, w*h)
	val := make([]float32, w*h)
	for y := range h {
		for x := range w {
			vox, _ := p.Voxel(p.X+x, p.Y+y)
			idx := vox[0] + v.Cols*(vox[1]+v.Rows*vox[2])
			lab[x+w*y] = labels[idx]
			val[x+w*y] = v.Data[idx]
		}
	}
	return overlay(img, p.X, p.Y, w, h, lab, val, pal, win)
}

// overlay draws a w x h grey image of val at (x0, y0) in img with the drawn
// labels lab tinted and outlined, and returns the number of masked pixels.
func overlay(img *image.RGBA, x0, y0, w, h int, lab []uint8, val []float32, pal [256]*[3]uint8, win [2]float32) int {
	masked := 0
	for y := range h {
		for x := range w {
			i := x + w*y
			g := grey(val[i], win)
			c := color.RGBA{g, g, g, 255}
			if col := pal[lab[i]]; col != nil {
				masked++
				if edge(lab, w, h, x, y) {
					c = offGrey(col[0], col[1], col[2])
				} else {
					c = tint(g, *col)
				}
			}
			img.SetRGBA(x0+x, y0+y, c)
		}
	}
	return masked
}

// edge reports whether pixel (x, y) of a labelled image has a 4-neighbour
// with another label (or the image's border).
func edge(lab []uint8, w, h, x, y int) bool {
	l := lab[x+w*y]
	return x == 0 || y == 0 || x == w-1 || y == h-1 ||
		lab[x-1+w*y] != l || lab[x+1+w*y] != l || lab[x+w*(y-1)] != l || lab[x+w*(y+1)] != l
}

// tint lays colour c over grey g.
func tint(g uint8, c [3]uint8) color.RGBA {
	mix := func(a uint8) uint8 { return uint8(float64(g)*(1-Tint) + float64(a)*Tint + 0.5) }
	return offGrey(mix(c[0]), mix(c[1]), mix(c[2]))
}

// offGrey is the colour (r, g, b), moved one step off grey when it is grey:
// in the drawn images, grey means source and colour means mask.
func offGrey(r, g, b uint8) color.RGBA {
	if r == g && g == b {
		if b < 255 {
			b++
		} else {
			b--
		}
	}
	return color.RGBA{r, g, b, 255}
}
