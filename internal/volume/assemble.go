package volume

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/segbridge/segbridge/internal/parallel"
)

// Tolerances of the series checks in Assemble.
const (
	// orientationTolerance is the largest difference allowed between the
	// ImageOrientationPatient components of two instances (about 0.06°).
	orientationTolerance = 1e-3
	// pixelSpacingTolerance is the largest PixelSpacing difference, in mm.
	pixelSpacingTolerance = 1e-3
	// positionTolerance is the absolute floor, in mm, of the position checks:
	// two slices closer than this along the normal are duplicates, and a
	// slice may lie this far off the line through the first one along the
	// normal. Each check allows relativeTolerance of its scale when larger.
	positionTolerance = 0.01
	// relativeTolerance is the fraction of the typical slice gap a gap may
	// differ by, and of the smallest pixel spacing a slice may lie off the
	// stack's axis.
	relativeTolerance = 0.01
)

// Assemble orders the instances of one series along their slice normal and
// builds its volume. Before it allocates anything it checks that the
// instances form a single, evenly spaced stack that fits lim: one series and
// frame of reference, no repeated SOPInstanceUID, the same image size, pixel
// spacing (within 0.001 mm) and orientation (within 0.001 per direction
// cosine), positions on one line along the normal (within 1% of the smallest
// pixel spacing, at least 0.01 mm), no two at the same place (0.01 mm), and
// gaps equal to the median gap within 1% (at least 0.01 mm). Every rejection
// wraps ErrInvalidSeries and says which instances broke the rule.
//
// The planes are the single-frame instances and the frames of enhanced
// multi-frame instances (Instance.Frames), which may be mixed. A 4-D series,
// whose planes repeat the same positions with different EchoNumbers, echo
// time, temporal position or AcquisitionNumber, is refused with a reason
// naming the attribute: segbridge does not pick one echo or time point for
// the user, since which one a model was trained on is not knowable here.
//
// Slices are ordered by the projection of ImagePositionPatient on the normal
// IOP[0:3] x IOP[3:6], ascending; InstanceNumber is ignored. Spacing[2] is the
// distance from the first to the last slice divided by Depth-1; for a single
// slice it is SpacingBetweenSlices, else SliceThickness, else 1 mm. Assemble
// does not modify the instances.
func Assemble(instances []*Instance, lim Limits) (*Volume, error) {
	lim = lim.WithDefaults()
	if len(instances) == 0 {
		return nil, fmt.Errorf("%w: the series has no image instances", ErrInvalidSeries)
	}
	for i, in := range instances {
		if in == nil {
			return nil, fmt.Errorf("%w: instance %d is nil", ErrInvalidSeries, i)
		}
	}
	instances = planes(instances)
	if err := checkConsistent(instances); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSeries, err)
	}
	ref := instances[0]
	if err := lim.checkVolume(ref.Cols, ref.Rows, len(instances)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSeries, err)
	}

	sorted, err := stack(instances)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSeries, err)
	}

	first, last := sorted[0], sorted[len(sorted)-1]
	v := &Volume{
		Geometry: Geometry{
			Cols:   ref.Cols,
			Rows:   ref.Rows,
			Depth:  len(sorted),
			Origin: first.Position,
		},
		Slices:              make([]Slice, len(sorted)),
		Header:              first.Header,
		SeriesInstanceUID:   first.SeriesInstanceUID,
		FrameOfReferenceUID: first.FrameOfReferenceUID,
		Modality:            first.Modality,
	}
	v.Spacing[0], v.Spacing[1] = first.PixelSpacing[1], first.PixelSpacing[0]
	v.Direction[0], v.Direction[1] = first.Orientation[0], first.Orientation[1]
	if len(sorted) > 1 {
		d := sub(last.Position, first.Position)
		v.Spacing[2] = norm(d) / float64(len(sorted)-1)
		v.Direction[2] = unit(d)
	} else {
		v.Direction[2] = first.Normal()
		v.Spacing[2] = 1
		switch {
		case first.SpacingBetweenSlices > 0:
			v.Spacing[2] = first.SpacingBetweenSlices
		case first.SliceThickness > 0:
			v.Spacing[2] = first.SliceThickness
		}
	}
	for k, in := range sorted {
		v.Slices[k] = Slice{SOPInstanceUID: in.SOPInstanceUID, SOPClassUID: in.SOPClassUID, Frame: in.Frame, Position: in.Position}
	}

	// checkVolume bounded Cols·Rows·Depth, so these products fit.
	plane := ref.Cols * ref.Rows
	v.Data = make([]float32, plane*len(sorted))
	decodeAll(v.Data, plane, sorted)
	return v, nil
}

// decodeAll decodes sorted[k] into plane k of data, spreading the slices over
// the available CPUs; a panic there reaches Assemble's caller.
func decodeAll(data []float32, plane int, sorted []*Instance) {
	parallel.Range(len(sorted), func(lo, hi int) {
		var cache lutCache
		for k := lo; k < hi; k++ {
			sorted[k].decodeInto(data[k*plane:(k+1)*plane], &cache)
		}
	})
}

// checkConsistent checks what every instance must share with the first.
func checkConsistent(instances []*Instance) error {
	ref := instances[0]
	type planeID struct {
		uid   string
		frame int
	}
	seen := make(map[planeID]bool, len(instances))
	for _, in := range instances {
		id := planeID{in.SOPInstanceUID, in.Frame}
		if seen[id] {
			return fmt.Errorf("instance %s appears more than once", in.name())
		}
		seen[id] = true
		if in.SeriesInstanceUID != ref.SeriesInstanceUID {
			return fmt.Errorf("instances %s and %s belong to different series (%s, %s)",
				ref.name(), in.name(), ref.SeriesInstanceUID, in.SeriesInstanceUID)
		}
		if in.FrameOfReferenceUID != ref.FrameOfReferenceUID {
			return fmt.Errorf("instances %s and %s have different frames of reference (%s, %s)",
				ref.name(), in.name(), ref.FrameOfReferenceUID, in.FrameOfReferenceUID)
		}
		if in.Rows != ref.Rows || in.Cols != ref.Cols {
			return fmt.Errorf("instance %s is %dx%d pixels but instance %s is %dx%d: the series mixes image sizes",
				in.name(), in.Cols, in.Rows, ref.name(), ref.Cols, ref.Rows)
		}
		if math.Abs(in.PixelSpacing[0]-ref.PixelSpacing[0]) > pixelSpacingTolerance ||
			math.Abs(in.PixelSpacing[1]-ref.PixelSpacing[1]) > pixelSpacingTolerance {
			return fmt.Errorf("instance %s has PixelSpacing %g\\%g but instance %s has %g\\%g: the series mixes pixel spacings",
				in.name(), in.PixelSpacing[0], in.PixelSpacing[1],
				ref.name(), ref.PixelSpacing[0], ref.PixelSpacing[1])
		}
		for a := range 2 {
			for c := range 3 {
				if math.Abs(in.Orientation[a][c]-ref.Orientation[a][c]) > orientationTolerance {
					return fmt.Errorf("instance %s has orientation %v but instance %s has %v: "+
						"the series mixes orientations (a localizer, or several planes)",
						in.name(), in.Orientation, ref.name(), ref.Orientation)
				}
			}
		}
	}
	return nil
}

// stack sorts the instances along the normal of the first and checks that
// they form one evenly spaced stack. It returns a sorted copy.
func stack(instances []*Instance) ([]*Instance, error) {
	ref := instances[0]
	normal := ref.Normal()
	type placed struct {
		in   *Instance
		proj float64
	}
	ps := make([]placed, len(instances))
	for i, in := range instances {
		ps[i] = placed{in, dot(in.Position, normal)}
	}
	slices.SortStableFunc(ps, func(a, b placed) int {
		return cmp.Or(cmp.Compare(a.proj, b.proj), cmp.Compare(a.in.SOPInstanceUID, b.in.SOPInstanceUID), cmp.Compare(a.in.Frame, b.in.Frame))
	})

	// One stack: every position on the line through the first along the normal.
	origin := ps[0].in.Position
	offTol := max(positionTolerance, relativeTolerance*min(ref.PixelSpacing[0], ref.PixelSpacing[1]))
	for _, p := range ps[1:] {
		d := sub(p.in.Position, origin)
		along := dot(d, normal)
		off := norm(sub(d, [3]float64{along * normal[0], along * normal[1], along * normal[2]}))
		if off > offTol {
			return nil, fmt.Errorf("slices do not form one stack: instance %s lies %.3f mm off the slice normal "+
				"through instance %s (more than one stack in the series, or a sheared acquisition)",
				p.in.name(), off, ps[0].in.name())
		}
	}
	if len(ps) == 1 {
		return []*Instance{ps[0].in}, nil
	}

	gaps := make([]float64, len(ps)-1)
	for k := range gaps {
		gaps[k] = ps[k+1].proj - ps[k].proj
		if gaps[k] <= positionTolerance {
			if why := fourD(ps[k].in, ps[k+1].in); why != "" {
				return nil, fmt.Errorf("4-D series: instances %s and %s are at the same position %v but differ in %s; "+
					"the series holds several echoes or time points of one stack, and segbridge segments one 3-D stack: "+
					"send each echo or time point as its own series",
					ps[k].in.name(), ps[k+1].in.name(), ps[k].in.Position, why)
			}
			return nil, fmt.Errorf("instances %s and %s are both at position %v (%.4f mm apart): "+
				"duplicate slices, or more than one acquisition in the series",
				ps[k].in.name(), ps[k+1].in.name(), ps[k].in.Position, gaps[k])
		}
	}
	sortedGaps := slices.Clone(gaps)
	sort.Float64s(sortedGaps)
	median := sortedGaps[len(sortedGaps)/2]
	gapTol := max(positionTolerance, relativeTolerance*median)
	for k, g := range gaps {
		if math.Abs(g-median) > gapTol {
			return nil, fmt.Errorf("uneven slice spacing: slices %d and %d (instances %s and %s) are %.4f mm apart "+
				"where most are %.4f mm (a missing slice, or more than one stack in the series)",
				k, k+1, ps[k].in.name(), ps[k+1].in.name(), g, median)
		}
	}
	out := make([]*Instance, len(ps))
	for k, p := range ps {
		out[k] = p.in
	}
	return out, nil
}

// fourD says which attribute tells apart two planes at the same position, the
// mark of a 4-D series (echoes, time points, repeated acquisitions), or "".
func fourD(a, b *Instance) string {
	switch {
	case a.EchoNumber != b.EchoNumber:
		return fmt.Sprintf("EchoNumbers (%d and %d)", a.EchoNumber, b.EchoNumber)
	case a.EchoTime != b.EchoTime:
		return fmt.Sprintf("echo time (%g and %g ms)", a.EchoTime, b.EchoTime)
	case a.TemporalPosition != b.TemporalPosition:
		return fmt.Sprintf("temporal position (%d and %d)", a.TemporalPosition, b.TemporalPosition)
	case a.AcquisitionNumber != b.AcquisitionNumber:
		return fmt.Sprintf("AcquisitionNumber (%d and %d)", a.AcquisitionNumber, b.AcquisitionNumber)
	}
	return ""
}
