#!/usr/bin/python3
"""makeseries.py writes a realistic single-frame DICOM MR series from a NIfTI volume.

It is the source of segbridge's geometry test data: every file is an MR Image
Storage Part-10 instance whose ImagePositionPatient/ImageOrientationPatient are
derived from the NIfTI affine, and next to the series it writes the ground
truth a reader must reproduce (geometry, voxel values, optionally a mask).

Run it with Debian's interpreter, which has python3-pydicom, python3-numpy,
python3-nibabel and python3-scipy:

    /usr/bin/python3 testdata/tools/makeseries.py \\
        --nifti /usr/share/mricron/templates/ch2.nii.gz --out /tmp/ax --plane axial

Planes:
  axial, coronal, sagittal  the NIfTI voxel grid itself, transposed and flipped
                            so that it reads in the usual radiological
                            orientation (no resampling);
  oblique                   the axial grid tilted by --tilt-deg about a
                            non-trivial axis, resampled with
                            scipy.ndimage.map_coordinates (order 1, outside = 0).

Truth (default directory: <out>.truth, or --truth DIR):
  truth.json     cols, rows, depth, spacing[3], origin[3], direction[3][3] in
                 segbridge's internal/volume convention (spacing[0] between
                 columns, spacing[1] between rows, spacing[2] between slice
                 planes; direction[0] = IOP[0:3], direction[1] = IOP[3:6],
                 direction[2] = unit vector from first to last slice) and, for
                 each slice k in spatial order (ascending along the normal
                 IOP[0:3] x IOP[3:6]), its SOPInstanceUID, InstanceNumber, IPP
                 and file name. Numbers are those written to the files (DS
                 strings parsed back), not the unrounded ones.
  truth.f32      float32 little endian modality values (stored * slope +
                 intercept), voxel (i, j, k) at i + cols * (j + rows * k).
  truth-mask.u8  with --mask-nifti: the same reslicing of a second NIfTI with
                 nearest neighbour, 1 where it is non-zero, 0 elsewhere.

Enhanced MR (--enhanced): one Enhanced MR Image Storage instance holding every
slice as a frame, frames in a shuffled (with --shuffle) or spatial order; each
frame's ImagePositionPatient is in its PlanePositionSequence, and PixelMeasures,
PlaneOrientation and PixelValueTransformation are in the shared functional
groups, or in every frame's own with --enhanced-groups perframe. truth.json's
slices then all name the one SOPInstanceUID and give each slice's "frame"
(1-based).

Broken series for rejection tests (--defect, the truth describes the series
before the defect):
  mixed-orientation  one slice's orientation turned by 5 degrees
  two-stacks         the second half of the slices shifted 20 mm sideways
  duplicate          one slice repeated at the same position (new SOPInstanceUID)
  gap                one slice in the middle left out
  no-pixels          Raw Data Storage objects with Modality MR and no pixel data
  j2k                transfer syntax JPEG 2000 with undecodable pixel data
--echoes N writes N echoes of every slice (EchoNumbers 1..N, EchoTime apart) at
the same positions: a 4-D series.

NIfTI world space is RAS; DICOM patient space is LPS, so x and y flip.
"""

import argparse
import datetime
import json
import math
import os
import random
import sys

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds
from scipy import ndimage

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
RAW_DATA_STORAGE = "1.2.840.10008.5.1.4.1.1.66"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

# Desired LPS directions of increasing column and increasing row, the way
# scanners present each plane (rows run head to foot in coronal and sagittal).
PLANES = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}

# The oblique grid turns about this (normalised) axis: mostly left-right like
# an AC-PC tilt, with enough of the other two that no grid axis stays put.
OBLIQUE_AXIS = (1.0, 0.45, 0.3)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nifti", required=True, help="input NIfTI volume")
    p.add_argument("--out", required=True, help="directory for the .dcm files (created)")
    p.add_argument("--truth", help="directory for truth.json/truth.f32 (default <out>.truth)")
    p.add_argument("--mask-nifti", help="second NIfTI resliced with nearest neighbour into truth-mask.u8")
    p.add_argument("--plane", choices=["axial", "sagittal", "coronal", "oblique"], default="axial")
    p.add_argument("--tilt-deg", type=float, default=15.0, help="oblique tilt in degrees (default 15)")
    p.add_argument("--shuffle", action="store_true", help="InstanceNumber in random order, not spatial")
    p.add_argument("--slope", type=float, default=1.0, help="RescaleSlope (default 1)")
    p.add_argument("--intercept", type=float, default=0.0, help="RescaleIntercept (default 0)")
    p.add_argument("--bits", type=int, choices=[8, 16], default=16, help="BitsAllocated (default 16)")
    p.add_argument("--bits-stored", type=int,
                   help="BitsStored (default: 12 for 16-bit when the values fit, else BitsAllocated)")
    p.add_argument("--signed", action="store_true", help="PixelRepresentation 1 (two's complement)")
    p.add_argument("--patient-id", default="SEGBRIDGE-CH2")
    p.add_argument("--study-uid")
    p.add_argument("--series-uid")
    p.add_argument("--series-number", type=int, default=1)
    p.add_argument("--seed", help="makes UIDs, file names and shuffling reproducible")
    p.add_argument("--step", default="1",
                   help="take every Nth column,row,slice: N or Ncol,Nrow,Nslice (default 1)")
    p.add_argument("--transfer-syntax", choices=["explicit", "implicit"], default="explicit")
    p.add_argument("--enhanced", action="store_true", help="one Enhanced MR multi-frame instance")
    p.add_argument("--enhanced-groups", choices=["shared", "perframe"], default="shared",
                   help="where --enhanced puts PixelMeasures, PlaneOrientation and PixelValueTransformation")
    p.add_argument("--defect", choices=["mixed-orientation", "two-stacks", "duplicate", "gap", "no-pixels", "j2k"],
                   help="break the series for rejection tests")
    p.add_argument("--echoes", type=int, default=1, help="echoes per position (>1: a 4-D series)")
    p.add_argument("--acquisition", choices=["2D", "3D"], default="3D", help="MRAcquisitionType (default 3D)")
    p.add_argument("--description", help="SeriesDescription (default: T1 MPRAGE ch2 <plane>)")
    args = p.parse_args(argv)
    parts = args.step.split(",")
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        p.error("--step wants N or Ncol,Nrow,Nslice")
    args.steps = [int(s) for s in parts]
    if min(args.steps) < 1:
        p.error("--step values must be >= 1")
    if args.slope == 0 or not math.isfinite(args.slope):
        p.error("--slope must be finite and non-zero")
    if args.bits_stored is not None and not 1 <= args.bits_stored <= args.bits:
        p.error("--bits-stored must be in 1..--bits")
    return args


def ds_str(x):
    """Formats x as a DICOM DS string (at most 16 characters)."""
    if abs(x) < 1e-12:
        x = 0.0
    return format_number_as_ds(float(x))


def axis_for(direction, m):
    """Returns (voxel axis, sign) whose LPS direction is closest to direction."""
    cols = m / np.linalg.norm(m, axis=0)
    cosines = np.asarray(direction) @ cols
    a = int(np.argmax(np.abs(cosines)))
    return a, (1 if cosines[a] > 0 else -1)


def reslice_axis_aligned(data, mask, m, t, plane, steps):
    """Transposes/flips the voxel grid so it reads as plane; no resampling.

    Returns (vol[s, r, c], mask or None, slice origin function, u, v, n step vectors in LPS mm).
    """
    u_want, v_want = (np.array(d) for d in PLANES[plane])
    n_want = np.cross(u_want, v_want)
    picks = [axis_for(d, m) for d in (u_want, v_want, n_want)]
    if len({a for a, _ in picks}) != 3:
        sys.exit("makeseries: the NIfTI affine is too oblique for plane %s" % plane)
    shape = data.shape[:3]
    start = np.zeros(3)
    step_vox = []
    for (a, sign), step in zip(picks, steps):
        e = np.zeros(3)
        e[a] = sign * step
        step_vox.append(e)
        if sign < 0:
            start[a] = shape[a] - 1

    def cut(arr):
        # Order axes as (slice, row, column), then flip and subsample.
        arr = np.transpose(arr, (picks[2][0], picks[1][0], picks[0][0]))
        sl = tuple(slice(None, None, s * st) for (_, s), st in zip((picks[2], picks[1], picks[0]),
                                                                  (steps[2], steps[1], steps[0])))
        return np.ascontiguousarray(arr[sl])

    vol = cut(data)
    mvol = cut(mask) if mask is not None else None
    du, dv, dn = (m @ e for e in step_vox)
    origin = m @ start + t
    return vol, mvol, origin, du, dv, dn


def rotation(axis, deg):
    axis = np.asarray(axis, dtype=float)
    axis /= np.linalg.norm(axis)
    th = math.radians(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(th) * k + (1 - math.cos(th)) * (k @ k)


def reslice_oblique(data, mask, m, t, tilt, steps):
    """Resamples onto an axial grid tilted by tilt degrees that covers the whole volume."""
    r = rotation(OBLIQUE_AXIS, tilt)
    u, v, n = r[:, 0], r[:, 1], r[:, 2]
    base = float(np.min(np.linalg.norm(m, axis=0)))
    sp = [base * s for s in steps]
    shape = np.array(data.shape[:3])
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)], dtype=float)
    world = corners @ m.T + t
    center = world.mean(axis=0)
    lo, counts = [], []
    for d, s in zip((u, v, n), sp):
        proj = (world - center) @ d
        lo.append(proj.min())
        counts.append(int(math.floor((proj.max() - proj.min()) / s)) + 1)
    origin = center + lo[0] * u + lo[1] * v + lo[2] * n
    du, dv, dn = u * sp[0], v * sp[1], n * sp[2]
    minv = np.linalg.inv(m)
    cols, rows, depth = counts
    cc, rr = np.meshgrid(np.arange(cols), np.arange(rows))  # [r, c]
    vol = np.zeros((depth, rows, cols))
    mvol = np.zeros((depth, rows, cols), dtype=np.uint8) if mask is not None else None
    for s in range(depth):
        pts = origin + s * dn + cc[..., None] * du + rr[..., None] * dv  # [r, c, 3]
        vox = (pts.reshape(-1, 3) - t) @ minv.T
        coords = vox.T
        vol[s] = ndimage.map_coordinates(data, coords, order=1, mode="constant", cval=0.0).reshape(rows, cols)
        if mask is not None:
            mvol[s] = ndimage.map_coordinates(mask, coords, order=0, mode="constant", cval=0).reshape(rows, cols)
    return vol, mvol, origin, du, dv, dn


def stored_range(bits, signed):
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def write_enhanced(args, new_dataset, pixel_module, set_pixels, stored, numbers, ipps_s, iop_s, ps_s,
                   slice_sp, sop_uid, name, truth_frames, wc, ww):
    """Writes every slice as a frame of one Enhanced MR Image Storage instance.

    Frame f + 1 holds the slice whose InstanceNumber would have been f + 1, so
    with --shuffle the frames are not in spatial order. truth_frames[s] gets
    the frame number of slice s.
    """
    depth = len(ipps_s)
    order = sorted(range(depth), key=lambda s: numbers[s])  # frame index -> slice
    ds = new_dataset(ENHANCED_MR_IMAGE_STORAGE, sop_uid, name)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.MagneticFieldStrength = "3"
    ds.AcquisitionContrast = "T1"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.NumberOfFrames = depth
    pixel_module(ds)

    def item(**kw):
        it = Dataset()
        for k, val in kw.items():
            setattr(it, k, val)
        return it

    measures = item(PixelSpacing=ps_s, SliceThickness=ds_str(slice_sp), SpacingBetweenSlices=ds_str(slice_sp))
    orient = item(ImageOrientationPatient=iop_s)
    rescale = item(RescaleIntercept=ds_str(args.intercept), RescaleSlope=ds_str(args.slope), RescaleType="US")
    groups = {"PixelMeasuresSequence": measures, "PlaneOrientationSequence": orient,
              "PixelValueTransformationSequence": rescale}
    shared = item(FrameVOILUTSequence=[item(WindowCenter=ds_str(wc), WindowWidth=ds_str(ww))],
                  MREchoSequence=[item(EffectiveEchoTime=2.98)])
    if args.enhanced_groups == "shared":
        for k, val in groups.items():
            setattr(shared, k, [val])
    ds.SharedFunctionalGroupsSequence = [shared]
    dim_org = generate_uid(entropy_srcs=[sop_uid, "dim"])
    ds.DimensionOrganizationSequence = [item(DimensionOrganizationUID=dim_org)]
    ds.DimensionIndexSequence = [
        item(DimensionOrganizationUID=dim_org, DimensionIndexPointer=0x00209056, FunctionalGroupPointer=0x00209111),
        item(DimensionOrganizationUID=dim_org, DimensionIndexPointer=0x00209057, FunctionalGroupPointer=0x00209111),
    ]
    per_frame = []
    for f, s in enumerate(order):
        truth_frames[s] = f + 1
        fg = item(FrameContentSequence=[item(StackID="1", InStackPositionNumber=s + 1, DimensionIndexValues=[1, s + 1])],
                  PlanePositionSequence=[item(ImagePositionPatient=ipps_s[s])])
        if args.enhanced_groups == "perframe":
            for k, val in groups.items():
                setattr(fg, k, [val])
        per_frame.append(fg)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    set_pixels(ds, b"".join(stored[s].tobytes() for s in order))
    ds.save_as(os.path.join(args.out, name), write_like_original=False)


def main(argv):
    args = parse_args(argv)
    if float(ds_str(args.slope)) != args.slope or float(ds_str(args.intercept)) != args.intercept:
        sys.exit("makeseries: --slope/--intercept do not survive DS formatting exactly")
    rng = random.Random(args.seed)

    img = nib.load(args.nifti)
    data = np.asarray(img.get_fdata(dtype=np.float64))
    if data.ndim > 3:
        data = data[..., 0]
    m = RAS_TO_LPS @ img.affine[:3, :3]
    t = RAS_TO_LPS @ img.affine[:3, 3]
    mask = None
    if args.mask_nifti:
        mimg = nib.load(args.mask_nifti)
        if mimg.shape[:3] != data.shape or not np.allclose(mimg.affine, img.affine, atol=1e-4):
            sys.exit("makeseries: --mask-nifti must share the grid of --nifti")
        mask = (np.asarray(mimg.dataobj)[..., 0] if mimg.ndim > 3 else np.asarray(mimg.dataobj)) != 0
        mask = mask.astype(np.uint8)

    if args.plane == "oblique":
        vol, mvol, origin, du, dv, dn = reslice_oblique(data, mask, m, t, args.tilt_deg, args.steps)
    else:
        vol, mvol, origin, du, dv, dn = reslice_axis_aligned(data, mask, m, t, args.plane, args.steps)
    depth, rows, cols = vol.shape

    stored = np.round((vol - args.intercept) / args.slope)
    smin, smax = float(stored.min()), float(stored.max())
    bits_stored = args.bits_stored
    if bits_stored is None:
        bits_stored = args.bits
        if args.bits == 16:
            lo, hi = stored_range(12, args.signed)
            if lo <= smin and smax <= hi:
                bits_stored = 12
    lo, hi = stored_range(bits_stored, args.signed)
    if smin < lo or smax > hi:
        sys.exit("makeseries: stored values span %g..%g, outside %d-bit %s range %d..%d; "
                 "choose --slope/--intercept/--bits/--signed to fit"
                 % (smin, smax, bits_stored, "signed" if args.signed else "unsigned", lo, hi))
    dtype = {(8, False): "u1", (8, True): "i1", (16, False): "<u2", (16, True): "<i2"}[(args.bits, args.signed)]
    stored = stored.astype(dtype)
    truth_vals = (stored.astype(np.float64) * args.slope + args.intercept).astype("<f4")

    # Geometry as written (DS strings parsed back).
    col_sp = np.linalg.norm(du)
    row_sp = np.linalg.norm(dv)
    u = du / col_sp
    v = dv / row_sp
    n = np.cross(u, v)
    if np.dot(n, dn) <= 0:
        sys.exit("makeseries: internal error: slice order does not follow the normal")
    iop_s = [ds_str(x) for x in list(u) + list(v)]
    ps_s = [ds_str(row_sp), ds_str(col_sp)]
    slice_sp = float(np.linalg.norm(dn))
    ipps_s = [[ds_str(x) for x in origin + s * dn] for s in range(depth)]
    ipps = [[float(x) for x in p] for p in ipps_s]
    iop = [float(x) for x in iop_s]

    def uid(*parts):
        return generate_uid(entropy_srcs=[str(args.seed)] + [str(p) for p in parts]) if args.seed is not None \
            else generate_uid()

    study_uid = args.study_uid or uid("study", args.patient_id)
    series_uid = args.series_uid or uid("series", study_uid, args.series_number, args.plane)
    for_uid = uid("for", study_uid, args.plane, args.tilt_deg)
    sop_uids = [uid("sop", series_uid, s) for s in range(depth)]
    numbers = list(range(1, depth + 1))
    if args.shuffle:
        rng.shuffle(numbers)
        if depth > 1 and numbers == sorted(numbers):
            numbers.reverse()
    names = ["%016x.dcm" % rng.getrandbits(64) for _ in range(depth)]

    os.makedirs(args.out, exist_ok=True)
    truth_dir = args.truth or (os.path.normpath(args.out) + ".truth")
    os.makedirs(truth_dir, exist_ok=True)

    now = datetime.datetime(2024, 5, 17, 9, 30, 0)
    desc = args.description or "T1 MPRAGE ch2 %s%s" % (args.plane, " %gdeg" % args.tilt_deg if args.plane == "oblique" else "")
    ts = ExplicitVRLittleEndian if args.transfer_syntax == "explicit" else ImplicitVRLittleEndian
    wc = (float(truth_vals.max()) + float(truth_vals.min())) / 2
    ww = max(float(truth_vals.max()) - float(truth_vals.min()), 1.0)
    def new_dataset(sop_class, sop_uid, name):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ts
        meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
        meta.ImplementationVersionName = "SEGBRIDGE_MKS"
        ds = FileDataset(name, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.is_little_endian = True
        ds.is_implicit_VR = args.transfer_syntax == "implicit"
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber = "SB%06d" % args.series_number
        ds.Modality = "MR"
        ds.Manufacturer = "segbridge makeseries"
        ds.InstitutionName = "Synthetic"
        ds.ReferringPhysicianName = ""
        ds.StationName = "MKSERIES"
        ds.StudyDescription = "Brain ch2 template"
        ds.SeriesDescription = desc
        ds.ManufacturerModelName = "makeseries.py"
        ds.PatientName = "CH2^TEMPLATE"
        ds.PatientID = args.patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.BodyPartExamined = "BRAIN"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = args.series_number
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        return ds

    def pixel_module(ds):
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.BitsAllocated = args.bits
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if args.signed else 0

    def set_pixels(ds, pixels):
        if len(pixels) % 2:
            pixels += b"\0"
        ds.PixelData = pixels
        ds["PixelData"].VR = "OB" if args.bits == 8 else "OW"

    truth_frames = [0] * depth
    if args.enhanced:
        write_enhanced(args, new_dataset, pixel_module, set_pixels, stored, numbers, ipps_s, iop_s, ps_s,
                       slice_sp, uid("sop", series_uid, "enhanced"), names[0], truth_frames, wc, ww)
        sop_uids = [uid("sop", series_uid, "enhanced")] * depth
    else:
        # Planes to write: (slice, position strings, orientation strings, echo, SOPInstanceUID, number, name).
        planes = [[s, ipps_s[s], iop_s, 1, sop_uids[s], numbers[s], names[s]] for s in range(depth)]
        mid = depth // 2
        if args.defect == "mixed-orientation":
            r = rotation(np.cross(u, v), 5.0)
            planes[mid][2] = [ds_str(x) for x in list(r @ u) + list(r @ v)]
        elif args.defect == "two-stacks":
            for pl in planes[mid:]:
                pl[1] = [ds_str(float(x) + 20.0 * float(c)) for x, c in zip(pl[1], u)]
        elif args.defect == "duplicate":
            planes.append([mid, ipps_s[mid], iop_s, 1, uid("sop", series_uid, "dup"), depth + 1,
                           "%016x.dcm" % rng.getrandbits(64)])
        elif args.defect == "gap":
            del planes[mid]
        for e in range(2, args.echoes + 1):
            planes += [[s, ipps_s[s], iop_s, e, uid("sop", series_uid, s, "echo", e), numbers[s] + depth * (e - 1),
                        "%016x.dcm" % rng.getrandbits(64)] for s in range(depth)]
        for s, ipp_s, orient_s, echo, sop_uid, number, name in planes:
            no_pixels = args.defect == "no-pixels"
            ds = new_dataset(RAW_DATA_STORAGE if no_pixels else MR_IMAGE_STORAGE, sop_uid, name)
            ds.InstanceNumber = number
            ds.AcquisitionNumber = 1
            ds.ImagePositionPatient = ipp_s
            ds.ImageOrientationPatient = orient_s
            if no_pixels:
                ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
                ds.save_as(os.path.join(args.out, name), write_like_original=False)
                continue
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = ["SP", "MP"]
            ds.ScanOptions = ""
            ds.MRAcquisitionType = args.acquisition
            ds.SliceThickness = ds_str(slice_sp)
            ds.SpacingBetweenSlices = ds_str(slice_sp)
            ds.RepetitionTime = "2300"
            ds.EchoTime = ds_str(2.98 + 5.0 * (echo - 1))
            ds.EchoNumbers = echo
            ds.MagneticFieldStrength = "3"
            ds.PatientPosition = "HFS"
            ds.SliceLocation = ds_str(float(np.dot([float(x) for x in ipp_s], n)))
            pixel_module(ds)
            ds.PixelSpacing = ps_s
            ds.WindowCenter = ds_str(wc)
            ds.WindowWidth = ds_str(ww)
            ds.RescaleIntercept = ds_str(args.intercept)
            ds.RescaleSlope = ds_str(args.slope)
            ds.RescaleType = "US"
            if args.signed:
                ds.SmallestImagePixelValue = int(stored[s].min())
                ds.LargestImagePixelValue = int(stored[s].max())
                ds["SmallestImagePixelValue"].VR = "SS"
                ds["LargestImagePixelValue"].VR = "SS"
            set_pixels(ds, stored[s].tobytes())
            if args.defect == "j2k":
                # Labelled JPEG 2000 with a fragment no decoder accepts: what
                # a store without a JPEG 2000 codec cannot transcode.
                ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
                ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
                ds["PixelData"].VR = "OB"
                ds.is_implicit_VR = False
            ds.save_as(os.path.join(args.out, name), write_like_original=False)

    first, last = np.array(ipps[0]), np.array(ipps[-1])
    if depth > 1:
        k_dir = (last - first) / np.linalg.norm(last - first)
        k_sp = float(np.linalg.norm(last - first)) / (depth - 1)
    else:
        k_dir, k_sp = n, slice_sp
    truth = {
        "generator": "testdata/tools/makeseries.py",
        "nifti": os.path.basename(args.nifti),
        "plane": args.plane,
        "tilt_deg": args.tilt_deg if args.plane == "oblique" else 0.0,
        "cols": cols,
        "rows": rows,
        "depth": depth,
        "spacing": [float(ps_s[1]), float(ps_s[0]), k_sp],
        "origin": ipps[0],
        "direction": [iop[0:3], iop[3:6], [float(x) for x in k_dir]],
        "rescale_slope": args.slope,
        "rescale_intercept": args.intercept,
        "bits_allocated": args.bits,
        "bits_stored": bits_stored,
        "signed": bool(args.signed),
        "transfer_syntax": ts,
        "patient_id": args.patient_id,
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "frame_of_reference_uid": for_uid,
        "enhanced": bool(args.enhanced),
        "slices": [{"sop_instance_uid": sop_uids[s], "instance_number": numbers[s], "frame": truth_frames[s],
                    "position": ipps[s], "file": names[0] if args.enhanced else names[s]} for s in range(depth)],
    }
    with open(os.path.join(truth_dir, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    truth_vals.tofile(os.path.join(truth_dir, "truth.f32"))
    if mvol is not None:
        mvol.astype(np.uint8).tofile(os.path.join(truth_dir, "truth-mask.u8"))
    print("makeseries: %d x %d x %d (%s) -> %s, truth in %s" % (cols, rows, depth, args.plane, args.out, truth_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
