// Package dicomsr writes the DICOM Structured Report that segbridge stores
// beside each SEG: a Comprehensive 3D SR following TID 1500 (Measurement
// Report) with one TID 1411 measurement group per segment — its volume in
// millilitres (UCUM "mL"), its tracking identifier and UID, the SEG segment it
// measures, the source series and the algorithm — so that a PACS, a reporting
// tool or a script reads the volumes without a viewer that draws SEGs.
package dicomsr

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/dicomds"
	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/volume"
)

// Comprehensive3DSRStorage is the SOP Class UID of the reports Encode writes.
const Comprehensive3DSRStorage = "1.2.840.10008.5.1.4.1.1.88.34"

// Defaults of Options.
const (
	DefaultSeriesNumber      = 9001
	DefaultSeriesDescription = "segbridge volumes"
	DefaultManufacturer      = "segbridge"
)

// Options describe the report beyond its measurements. The zero value of a
// field means its default.
type Options struct {
	// AlgorithmName and AlgorithmVersion identify the model (TID 4019), as
	// in the SEG. Both are required.
	AlgorithmName    string
	AlgorithmVersion string
	// SeriesNumber of the SR series. Default 9001: after the SEG's 9000.
	SeriesNumber int
	// SeriesDescription of the SR series. Default "segbridge volumes".
	SeriesDescription string
	// Manufacturer, also the device observer's name and manufacturer.
	// Default "segbridge".
	Manufacturer string
	// SoftwareVersions, e.g. "segbridge 1.2.0". Default "segbridge".
	SoftwareVersions string
	// Now gives the content, series and instance creation dates and times.
	// Default time.Now.
	Now func() time.Time
	// NewUID makes the SeriesInstanceUID, the SOPInstanceUID, then one
	// tracking UID per measurement, in that order. Default dicomseg.NewUID;
	// a worker passes dicomseg.DerivedUIDs so that a repeated attempt writes
	// the same report.
	NewUID func() string
}

func (o Options) withDefaults() Options {
	if o.SeriesNumber == 0 {
		o.SeriesNumber = DefaultSeriesNumber
	}
	if o.SeriesDescription == "" {
		o.SeriesDescription = DefaultSeriesDescription
	}
	if o.Manufacturer == "" {
		o.Manufacturer = DefaultManufacturer
	}
	if o.SoftwareVersions == "" {
		o.SoftwareVersions = dicomseg.DefaultSoftwareVersions
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewUID == nil {
		o.NewUID = dicomseg.NewUID
	}
	return o
}

// SEG names the segmentation the measurements refer to.
type SEG struct {
	SOPInstanceUID    string
	SeriesInstanceUID string
}

// Measurement is one segment's volume.
type Measurement struct {
	// SegmentNumber is the segment's number in the SEG.
	SegmentNumber int
	// Segment describes it: Name is the tracking identifier, Category and
	// Type the finding category and finding.
	Segment dicomseg.Segment
	// Voxels is how many voxels of the SEG the segment holds, and VolumeML
	// their volume (Voxels times the SEG's voxel volume).
	Voxels   int
	VolumeML float64
}

// Volumes measures the segments of a label volume on v's grid: for each
// segment, its voxel count and that count times the voxel volume, in mL.
// SegmentNumber is its number in a SEG that dicomseg.Encode writes for segs.
func Volumes(v *volume.Volume, labels []uint8, segs []dicomseg.Segment) []Measurement {
	var count [256]int
	for _, l := range labels {
		count[l]++
	}
	ml := v.Spacing[0] * v.Spacing[1] * v.Spacing[2] / 1000
	// dicomseg numbers segments by increasing label.
	sorted := slices.Clone(segs)
	slices.SortStableFunc(sorted, func(a, b dicomseg.Segment) int { return a.Label - b.Label })
	out := make([]Measurement, len(sorted))
	for i, s := range sorted {
		n := 0
		if s.Label >= 0 && s.Label < 256 {
			n = count[s.Label]
		}
		out[i] = Measurement{SegmentNumber: i + 1, Segment: s, Voxels: n, VolumeML: float64(n) * ml}
	}
	return out
}

// Result is an encoded report.
type Result struct {
	Bytes             []byte
	SeriesInstanceUID string
	SOPInstanceUID    string
}

// Codes of the report's content (PS3.16): concept names, and the values
// every report carries.
var (
	codeReport            = code{"126000", "DCM", "Imaging Measurement Report"}
	codeLanguage          = code{"121049", "DCM", "Language of Content Item and Descendants"}
	codeEnglishUS         = code{"en-US", "RFC5646", "English (United States)"}
	codeObserverType      = code{"121005", "DCM", "Observer Type"}
	codeDevice            = code{"121007", "DCM", "Device"}
	codeDeviceUID         = code{"121012", "DCM", "Device Observer UID"}
	codeDeviceName        = code{"121013", "DCM", "Device Observer Name"}
	codeDeviceMaker       = code{"121014", "DCM", "Device Observer Manufacturer"}
	codeProcedureReported = code{"121058", "DCM", "Procedure reported"}
	codeImageLibrary      = code{"111028", "DCM", "Image Library"}
	codeImageLibraryGroup = code{"126200", "DCM", "Image Library Group"}
	codeMeasurements      = code{"126010", "DCM", "Imaging Measurements"}
	codeGroup             = code{"125007", "DCM", "Measurement Group"}
	codeTrackingID        = code{"112039", "DCM", "Tracking Identifier"}
	codeTrackingUID       = code{"112040", "DCM", "Tracking Unique Identifier"}
	codeFindingCategory   = code{"276214006", "SCT", "Finding category"}
	codeFinding           = code{"121071", "DCM", "Finding"}
	codeAlgorithmName     = code{"111001", "DCM", "Algorithm Name"}
	codeAlgorithmVersion  = code{"111003", "DCM", "Algorithm Version"}
	codeReferencedSegment = code{"121191", "DCM", "Referenced Segment"}
	codeSourceSeries      = code{"121232", "DCM", "Source series for segmentation"}
	codeVolume            = code{"118565006", "SCT", "Volume"}
	codeMillilitre        = code{"mL", "UCUM", "milliliter"}
)

// DeviceObserverUID identifies segbridge as the device that made the
// measurements (TID 1004); it is the same in every report.
const DeviceObserverUID = dicomds.ImplementationClassUID + ".1"

// procedure is the "Procedure reported" of a source modality (CID 100).
func procedure(modality string) code {
	switch strings.ToUpper(modality) {
	case "MR":
		return code{"113091000", "SCT", "Magnetic resonance imaging"}
	case "CT":
		return code{"77477000", "SCT", "Computed tomography"}
	case "PT":
		return code{"82918005", "SCT", "Positron emission tomography"}
	}
	return code{"363679005", "SCT", "Imaging"}
}

type code struct{ value, scheme, meaning string }

// Encode writes the report of ms, measured on the SEG seg of source volume v
// (whose header gives the patient and study, and whose slices the image
// library and evidence list). It returns an error naming the problem for bad
// input.
func Encode(v *volume.Volume, seg SEG, ms []Measurement, opts Options) (*Result, error) {
	opts = opts.withDefaults()
	if err := check(v, seg, ms, opts); err != nil {
		return nil, err
	}
	e := &encoder{b: &dicomds.Builder{}, v: v, seg: seg, ms: ms, opts: opts, now: opts.Now()}
	e.series, e.sop = opts.NewUID(), opts.NewUID()
	for range ms {
		e.tracking = append(e.tracking, opts.NewUID())
	}
	data, err := e.b.Write(e.dataset())
	if err != nil {
		return nil, fmt.Errorf("encode SR: %w", err)
	}
	return &Result{Bytes: data, SeriesInstanceUID: e.series, SOPInstanceUID: e.sop}, nil
}

func check(v *volume.Volume, seg SEG, ms []Measurement, o Options) error {
	switch {
	case v == nil || v.Header == nil:
		return errors.New("no source volume header")
	case len(v.Slices) == 0 || v.SeriesInstanceUID == "":
		return errors.New("source volume has no slices or no SeriesInstanceUID")
	case dicomds.HeaderString(v.Header, tag.StudyInstanceUID) == "":
		return errors.New("source header has no StudyInstanceUID")
	case seg.SOPInstanceUID == "" || seg.SeriesInstanceUID == "":
		return errors.New("no SEG to refer to")
	case len(ms) == 0:
		return errors.New("no measurements")
	case strings.TrimSpace(o.AlgorithmName) == "" || strings.TrimSpace(o.AlgorithmVersion) == "":
		return errors.New("AlgorithmName and AlgorithmVersion are required")
	}
	for _, m := range ms {
		if m.SegmentNumber < 1 || m.SegmentNumber > math.MaxUint16 {
			return fmt.Errorf("segment %q: number %d out of range", m.Segment.Name, m.SegmentNumber)
		}
		if m.VolumeML < 0 || math.IsNaN(m.VolumeML) || math.IsInf(m.VolumeML, 0) {
			return fmt.Errorf("segment %q: volume %v mL", m.Segment.Name, m.VolumeML)
		}
		if strings.TrimSpace(m.Segment.Name) == "" {
			return fmt.Errorf("segment %d: no name", m.SegmentNumber)
		}
		for _, c := range []dicomseg.Code{m.Segment.Category, m.Segment.Type} {
			if c.Value == "" || c.Scheme == "" || c.Meaning == "" {
				return fmt.Errorf("segment %q: code %+v: value, scheme and meaning are required", m.Segment.Name, c)
			}
		}
	}
	return nil
}

type encoder struct {
	b        *dicomds.Builder
	v        *volume.Volume
	seg      SEG
	ms       []Measurement
	opts     Options
	now      time.Time
	series   string
	sop      string
	tracking []string
}

func (e *encoder) dataset() []*dicom.Element {
	b, o := e.b, e.opts
	date, tm := e.now.Format("20060102"), e.now.Format("150405")
	els := b.FileMeta(Comprehensive3DSRStorage, e.sop)
	els = append(els,
		// SOP Common.
		b.Str(tag.SOPClassUID, Comprehensive3DSRStorage),
		b.Str(tag.SOPInstanceUID, e.sop),
		b.Str(tag.InstanceCreationDate, date),
		b.Str(tag.InstanceCreationTime, tm),

		// SR Document Series.
		b.Str(tag.Modality, "SR"),
		b.Str(tag.SeriesInstanceUID, e.series),
		b.Str(tag.SeriesNumber, strconv.Itoa(o.SeriesNumber)),
		b.Str(tag.SeriesDescription, dicomds.TruncateLO(o.SeriesDescription)),
		b.Str(tag.SeriesDate, date),
		b.Str(tag.SeriesTime, tm),
		b.Seq(tag.ReferencedPerformedProcedureStepSequence),

		// General Equipment.
		b.Str(tag.Manufacturer, dicomds.TruncateLO(o.Manufacturer)),
		b.Str(tag.SoftwareVersions, dicomds.TruncateLO(o.SoftwareVersions)),

		// SR Document General.
		b.Str(tag.InstanceNumber, "1"),
		b.Str(tag.CompletionFlag, "COMPLETE"),
		b.Str(tag.VerificationFlag, "UNVERIFIED"),
		b.Str(tag.ContentDate, date),
		b.Str(tag.ContentTime, tm),
		b.Seq(tag.PerformedProcedureCodeSequence),
		e.evidence(),

		// SR Document Content: the root container.
		b.Str(tag.ValueType, "CONTAINER"),
		b.Seq(tag.ConceptNameCodeSequence, e.code(codeReport)),
		b.Str(tag.ContinuityOfContent, "SEPARATE"),
		b.Seq(tag.ContentTemplateSequence, e.template("1500")),
		b.Seq(tag.ContentSequence, e.rootContent()...),
	)
	return append(els, b.PatientStudy(e.v.Header)...)
}

// evidence lists every instance the report refers to, the source images and
// the SEG, all in the source's study (CurrentRequestedProcedureEvidenceSequence).
func (e *encoder) evidence() *dicom.Element {
	b := e.b
	var src [][]*dicom.Element
	seen := map[string]bool{}
	for _, s := range e.v.Slices {
		if seen[s.SOPInstanceUID] {
			continue
		}
		seen[s.SOPInstanceUID] = true
		src = append(src, []*dicom.Element{
			b.Str(tag.ReferencedSOPClassUID, s.SOPClassUID),
			b.Str(tag.ReferencedSOPInstanceUID, s.SOPInstanceUID),
		})
	}
	return b.Seq(tag.CurrentRequestedProcedureEvidenceSequence, []*dicom.Element{
		b.Str(tag.StudyInstanceUID, dicomds.HeaderString(e.v.Header, tag.StudyInstanceUID)),
		b.Seq(tag.ReferencedSeriesSequence,
			[]*dicom.Element{
				b.Str(tag.SeriesInstanceUID, e.v.SeriesInstanceUID),
				b.Seq(tag.ReferencedSOPSequence, src...),
			},
			[]*dicom.Element{
				b.Str(tag.SeriesInstanceUID, e.seg.SeriesInstanceUID),
				b.Seq(tag.ReferencedSOPSequence, []*dicom.Element{
					b.Str(tag.ReferencedSOPClassUID, dicomseg.SegmentationStorage),
					b.Str(tag.ReferencedSOPInstanceUID, e.seg.SOPInstanceUID),
				}),
			},
		),
	})
}

// rootContent is TID 1500's content: language, observer, procedure, the
// image library and the imaging measurements.
func (e *encoder) rootContent() [][]*dicom.Element {
	items := [][]*dicom.Element{
		e.codeItem("HAS CONCEPT MOD", codeLanguage, codeEnglishUS),
		// TID 1002 Observer Context with a device observer (TID 1004).
		e.codeItem("HAS OBS CONTEXT", codeObserverType, codeDevice),
		e.uidItem("HAS OBS CONTEXT", codeDeviceUID, DeviceObserverUID),
		e.textItem("HAS OBS CONTEXT", codeDeviceName, e.opts.Manufacturer),
		e.textItem("HAS OBS CONTEXT", codeDeviceMaker, e.opts.Manufacturer),
		e.codeItem("HAS CONCEPT MOD", codeProcedureReported, procedure(e.v.Modality)),
		e.container(codeImageLibrary, "", [][]*dicom.Element{
			e.container(codeImageLibraryGroup, "", e.libraryEntries()),
		}),
	}
	groups := make([][]*dicom.Element, len(e.ms))
	for i, m := range e.ms {
		groups[i] = e.group(i, m)
	}
	return append(items, e.container(codeMeasurements, "", groups))
}

// libraryEntries are TID 1601's image entries, one per source instance.
func (e *encoder) libraryEntries() [][]*dicom.Element {
	b := e.b
	var out [][]*dicom.Element
	seen := map[string]bool{}
	for _, s := range e.v.Slices {
		ref := []*dicom.Element{
			b.Str(tag.ReferencedSOPClassUID, s.SOPClassUID),
			b.Str(tag.ReferencedSOPInstanceUID, s.SOPInstanceUID),
		}
		key := s.SOPInstanceUID
		if s.Frame > 0 {
			ref = append(ref, b.Str(tag.ReferencedFrameNumber, strconv.Itoa(s.Frame)))
			key += "/" + strconv.Itoa(s.Frame)
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, []*dicom.Element{
			b.Str(tag.RelationshipType, "CONTAINS"),
			b.Str(tag.ValueType, "IMAGE"),
			b.Seq(tag.ReferencedSOPSequence, ref),
		})
	}
	return out
}

// group is one segment's TID 1411 Volumetric ROI Measurements group.
func (e *encoder) group(i int, m Measurement) []*dicom.Element {
	b := e.b
	seg := m.Segment
	content := [][]*dicom.Element{
		e.textItem("HAS OBS CONTEXT", codeTrackingID, seg.Name),
		e.uidItem("HAS OBS CONTEXT", codeTrackingUID, e.tracking[i]),
		e.codeItem("CONTAINS", codeFindingCategory, code{seg.Category.Value, seg.Category.Scheme, seg.Category.Meaning}),
		e.codeItem("CONTAINS", codeFinding, code{seg.Type.Value, seg.Type.Scheme, seg.Type.Meaning}),
		// TID 4019 Algorithm Identification.
		e.textItem("HAS CONCEPT MOD", codeAlgorithmName, e.opts.AlgorithmName),
		e.textItem("HAS CONCEPT MOD", codeAlgorithmVersion, e.opts.AlgorithmVersion),
		{
			b.Str(tag.RelationshipType, "CONTAINS"),
			b.Str(tag.ValueType, "IMAGE"),
			b.Seq(tag.ConceptNameCodeSequence, e.code(codeReferencedSegment)),
			b.Seq(tag.ReferencedSOPSequence, []*dicom.Element{
				b.Str(tag.ReferencedSOPClassUID, dicomseg.SegmentationStorage),
				b.Str(tag.ReferencedSOPInstanceUID, e.seg.SOPInstanceUID),
				b.Ints(tag.ReferencedSegmentNumber, m.SegmentNumber),
			}),
		},
		e.uidItem("CONTAINS", codeSourceSeries, e.v.SeriesInstanceUID),
		{
			b.Str(tag.RelationshipType, "CONTAINS"),
			b.Str(tag.ValueType, "NUM"),
			b.Seq(tag.ConceptNameCodeSequence, e.code(codeVolume)),
			b.Seq(tag.MeasuredValueSequence, []*dicom.Element{
				b.Seq(tag.MeasurementUnitsCodeSequence, e.code(codeMillilitre)),
				b.DS(tag.NumericValue, m.VolumeML),
			}),
		},
	}
	return e.container(codeGroup, "1411", content)
}

func (e *encoder) code(c code) []*dicom.Element {
	return e.b.Code(c.value, c.scheme, c.meaning)
}

func (e *encoder) template(id string) []*dicom.Element {
	return []*dicom.Element{
		e.b.Str(tag.MappingResource, "DCMR"),
		e.b.Str(tag.TemplateIdentifier, id),
	}
}

// container is a CONTAINS CONTAINER content item with its children; with a
// template id it says which template it follows.
func (e *encoder) container(name code, templateID string, children [][]*dicom.Element) []*dicom.Element {
	b := e.b
	it := []*dicom.Element{
		b.Str(tag.RelationshipType, "CONTAINS"),
		b.Str(tag.ValueType, "CONTAINER"),
		b.Seq(tag.ConceptNameCodeSequence, e.code(name)),
		b.Str(tag.ContinuityOfContent, "SEPARATE"),
	}
	if templateID != "" {
		it = append(it, b.Seq(tag.ContentTemplateSequence, e.template(templateID)))
	}
	if len(children) > 0 {
		it = append(it, b.Seq(tag.ContentSequence, children...))
	}
	return it
}

func (e *encoder) codeItem(rel string, name, value code) []*dicom.Element {
	b := e.b
	return []*dicom.Element{
		b.Str(tag.RelationshipType, rel),
		b.Str(tag.ValueType, "CODE"),
		b.Seq(tag.ConceptNameCodeSequence, e.code(name)),
		b.Seq(tag.ConceptCodeSequence, e.code(value)),
	}
}

func (e *encoder) textItem(rel string, name code, text string) []*dicom.Element {
	b := e.b
	return []*dicom.Element{
		b.Str(tag.RelationshipType, rel),
		b.Str(tag.ValueType, "TEXT"),
		b.Seq(tag.ConceptNameCodeSequence, e.code(name)),
		b.Str(tag.TextValue, text),
	}
}

func (e *encoder) uidItem(rel string, name code, uid string) []*dicom.Element {
	b := e.b
	return []*dicom.Element{
		b.Str(tag.RelationshipType, rel),
		b.Str(tag.ValueType, "UIDREF"),
		b.Seq(tag.ConceptNameCodeSequence, e.code(name)),
		b.Str(tag.UID, uid),
	}
}
