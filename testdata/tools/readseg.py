#!/usr/bin/python3
"""Read a DICOM SEG independently of segbridge's Go code and dump what it says.

Usage: /usr/bin/python3 testdata/tools/readseg.py SEG.dcm OUTDIR

Run it with Debian's /usr/bin/python3, which has python3-pydicom and
python3-numpy. It writes to OUTDIR:

  seg.json   {rows, cols, number_of_frames, segmentation_type,
              sop_class_uid, sop_instance_uid, series_instance_uid,
              study_instance_uid, frame_of_reference_uid, patient_id,
              modality, transfer_syntax_uid,
              maximum_fractional_value, fractional_type (FRACTIONAL only),
              frames: [{segment, ipp: [x, y, z], ref_sop_instance_uid,
                        ref_sop_class_uid, ref_frame_number (or null),
                        dimension_index_values}],
              segments: [{number, label, algorithm_type, category: {value,
                          scheme, meaning}, type: {...}, cielab: [L, a, b],
                          algorithm_name, algorithm_version, algorithm_family}],
              referenced_series: {uid, instances: [{sop_class_uid,
                                                    sop_instance_uid}]}}
  frames.u8  frames x rows x cols bytes, 0 or 1 (FRACTIONAL: the stored
             0..MaximumFractionalValue), in frame order.

The pixel data is unpacked here (numpy.unpackbits, bitorder little), not by
pydicom, so that the check of the bit packing does not rest on one library.
Exit status 1 with a message on stderr when the file is not a readable
binary SEG.
"""

import json
import os
import sys

import numpy as np
import pydicom


def code(seq):
    if not seq:
        return None
    item = seq[0]
    value = (item.get("CodeValue") or item.get("LongCodeValue")
             or item.get("URNCodeValue") or "")
    return {
        "value": str(value).strip(),
        "scheme": str(item.get("CodingSchemeDesignator", "")),
        "meaning": str(item.get("CodeMeaning", "")),
    }


def frame_item(ds, i, keyword):
    """Return the first item of functional group `keyword` of frame i,
    looking in the per-frame groups first and then in the shared ones."""
    pf = ds.PerFrameFunctionalGroupsSequence[i]
    if keyword in pf and len(pf[keyword].value) > 0:
        return pf[keyword].value[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0] and len(shared[0][keyword].value) > 0:
        return shared[0][keyword].value[0]
    return None


def main(argv):
    if len(argv) != 3:
        print("usage: readseg.py SEG.dcm OUTDIR", file=sys.stderr)
        return 2
    path, out = argv[1], argv[2]
    ds = pydicom.dcmread(path)

    if ds.SOPClassUID != "1.2.840.10008.5.1.4.1.1.66.4":
        print("not a Segmentation Storage instance: %s" % ds.SOPClassUID, file=sys.stderr)
        return 1
    fractional = ds.SegmentationType == "FRACTIONAL"
    if not ((ds.SegmentationType == "BINARY" and int(ds.BitsAllocated) == 1)
            or (fractional and int(ds.BitsAllocated) == 8)):
        print("only BINARY (1-bit) and FRACTIONAL (8-bit) segmentations are supported", file=sys.stderr)
        return 1

    rows, cols = int(ds.Rows), int(ds.Columns)
    nframes = int(ds.NumberOfFrames)

    frames = []
    for i in range(nframes):
        pos = frame_item(ds, i, "PlanePositionSequence")
        seg = frame_item(ds, i, "SegmentIdentificationSequence")
        content = frame_item(ds, i, "FrameContentSequence")
        deriv = frame_item(ds, i, "DerivationImageSequence")
        src = deriv.SourceImageSequence[0] if deriv is not None and "SourceImageSequence" in deriv else None
        frames.append({
            "segment": int(seg.ReferencedSegmentNumber) if seg is not None else None,
            "ipp": [float(x) for x in pos.ImagePositionPatient] if pos is not None else None,
            "ref_sop_instance_uid": str(src.ReferencedSOPInstanceUID) if src is not None else None,
            "ref_sop_class_uid": str(src.ReferencedSOPClassUID) if src is not None else None,
            "ref_frame_number": int(src.ReferencedFrameNumber)
            if src is not None and "ReferencedFrameNumber" in src else None,
            "dimension_index_values": [int(x) for x in content.DimensionIndexValues]
            if content is not None and "DimensionIndexValues" in content else None,
        })

    segments = []
    for s in ds.SegmentSequence:
        alg = s.get("SegmentationAlgorithmIdentificationSequence")
        alg = alg[0] if alg else None
        segments.append({
            "number": int(s.SegmentNumber),
            "label": str(s.SegmentLabel),
            "algorithm_type": str(s.SegmentAlgorithmType),
            "category": code(s.get("SegmentedPropertyCategoryCodeSequence")),
            "type": code(s.get("SegmentedPropertyTypeCodeSequence")),
            "cielab": [int(x) for x in s.RecommendedDisplayCIELabValue]
            if "RecommendedDisplayCIELabValue" in s else None,
            "algorithm_name": str(s.get("SegmentAlgorithmName", "")),
            "algorithm_version": str(alg.get("AlgorithmVersion", "")) if alg is not None else None,
            "algorithm_family": code(alg.get("AlgorithmFamilyCodeSequence")) if alg is not None else None,
        })

    refs = {"uid": None, "instances": []}
    if "ReferencedSeriesSequence" in ds and len(ds.ReferencedSeriesSequence) > 0:
        rs = ds.ReferencedSeriesSequence[0]
        refs["uid"] = str(rs.SeriesInstanceUID)
        for r in rs.ReferencedInstanceSequence:
            refs["instances"].append({
                "sop_class_uid": str(r.ReferencedSOPClassUID),
                "sop_instance_uid": str(r.ReferencedSOPInstanceUID),
            })

    # Unpack the bits ourselves: pixel p of frame f is bit f*rows*cols + p,
    # least significant bit first, with no padding between frames.
    raw = np.frombuffer(ds.PixelData, dtype=np.uint8)
    need = nframes * rows * cols
    if fractional:
        if raw.size < need:
            print("PixelData has %d bytes, %d frames of %dx%d need %d" % (raw.size, nframes, rows, cols, need),
                  file=sys.stderr)
            return 1
        bits = raw[:need].reshape(nframes, rows, cols)
    elif raw.size * 8 < need:
        print("PixelData has %d bytes, %d frames of %dx%d need %d bits"
              % (raw.size, nframes, rows, cols, need), file=sys.stderr)
        return 1
    else:
        bits = np.unpackbits(raw, bitorder="little")[:need].reshape(nframes, rows, cols)

    os.makedirs(out, exist_ok=True)
    info = {
        "rows": rows,
        "cols": cols,
        "number_of_frames": nframes,
        "segmentation_type": str(ds.SegmentationType),
        "maximum_fractional_value": int(ds.MaximumFractionalValue) if fractional else None,
        "fractional_type": str(ds.SegmentationFractionalType) if fractional else None,
        "sop_class_uid": str(ds.SOPClassUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "series_instance_uid": str(ds.SeriesInstanceUID),
        "study_instance_uid": str(ds.StudyInstanceUID),
        "frame_of_reference_uid": str(ds.FrameOfReferenceUID),
        "patient_id": str(ds.get("PatientID", "")),
        "modality": str(ds.Modality),
        "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
        "frames": frames,
        "segments": segments,
        "referenced_series": refs,
    }
    with open(os.path.join(out, "seg.json"), "w") as f:
        json.dump(info, f, indent=1)
    with open(os.path.join(out, "frames.u8"), "wb") as f:
        f.write(np.ascontiguousarray(bits, dtype=np.uint8).tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
