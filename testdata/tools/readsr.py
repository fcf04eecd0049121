#!/usr/bin/python3
"""Read a TID 1500 measurement report independently of segbridge's Go code.

Usage: /usr/bin/python3 testdata/tools/readsr.py SR.dcm [SEG.dcm]

Run it with Debian's /usr/bin/python3 (python3-pydicom, python3-numpy). It
walks the SR content tree by concept names (PS3.16 codes, written here, not
taken from segbridge) and prints JSON:

  {sop_class_uid, modality, template, study_instance_uid, patient_id,
   series_instance_uid, sop_instance_uid, completion_flag, verification_flag,
   observer_type, device_observer_uid, procedure_reported,
   image_library: [sop_instance_uid, ...],
   evidence: [{series_instance_uid, sop_instance_uids: [...]}],
   groups: [{template, tracking_identifier, tracking_uid,
             finding_category, finding: {value, scheme, meaning},
             algorithm_name, algorithm_version,
             referenced_segment: {sop_class_uid, sop_instance_uid, segment_number},
             source_series_uid,
             volume: {value, unit: {value, scheme, meaning}}}],
   seg_volumes_ml: {segment number: voxels x voxel volume}}   (with SEG.dcm)

With SEG.dcm it measures the SEG itself: set pixels per segment (unpacked
with numpy.unpackbits here) times PixelSpacing x SpacingBetweenSlices of its
shared functional groups, in mL. Exit status 1 with a message on stderr when
the SR is not a TID 1500 report.
"""

import json
import sys

import numpy as np
import pydicom


def code(seq):
    if not seq:
        return None
    item = seq[0]
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    return {"value": str(value).strip(), "scheme": str(item.get("CodingSchemeDesignator", "")),
            "meaning": str(item.get("CodeMeaning", ""))}


def name(item):
    c = code(item.get("ConceptNameCodeSequence"))
    return (c["value"], c["scheme"]) if c else None


def children(item):
    return list(item.get("ContentSequence", []))


def find(item, value, scheme):
    return [c for c in children(item) if name(c) == (value, scheme)]


def one(item, value, scheme):
    hits = find(item, value, scheme)
    return hits[0] if hits else None


def template(item):
    seq = item.get("ContentTemplateSequence")
    return str(seq[0].TemplateIdentifier) if seq else None


def group(g):
    out = {"template": template(g)}
    t = one(g, "112039", "DCM")
    out["tracking_identifier"] = str(t.TextValue) if t is not None else None
    u = one(g, "112040", "DCM")
    out["tracking_uid"] = str(u.UID) if u is not None else None
    c = one(g, "276214006", "SCT")
    out["finding_category"] = code(c.ConceptCodeSequence) if c is not None else None
    f = one(g, "121071", "DCM")
    out["finding"] = code(f.ConceptCodeSequence) if f is not None else None
    a = one(g, "111001", "DCM")
    out["algorithm_name"] = str(a.TextValue) if a is not None else None
    v = one(g, "111003", "DCM")
    out["algorithm_version"] = str(v.TextValue) if v is not None else None
    r = one(g, "121191", "DCM")
    if r is not None and r.ValueType == "IMAGE":
        ref = r.ReferencedSOPSequence[0]
        out["referenced_segment"] = {
            "sop_class_uid": str(ref.ReferencedSOPClassUID),
            "sop_instance_uid": str(ref.ReferencedSOPInstanceUID),
            "segment_number": int(ref.ReferencedSegmentNumber),
        }
    s = one(g, "121232", "DCM")
    out["source_series_uid"] = str(s.UID) if s is not None else None
    n = one(g, "118565006", "SCT")
    if n is not None and n.ValueType == "NUM":
        mv = n.MeasuredValueSequence[0]
        out["volume"] = {"value": float(mv.NumericValue), "unit": code(mv.MeasurementUnitsCodeSequence)}
    return out


def seg_volumes(path):
    ds = pydicom.dcmread(path)
    rows, cols, frames = int(ds.Rows), int(ds.Columns), int(ds.NumberOfFrames)
    raw = np.frombuffer(ds.PixelData, dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[: frames * rows * cols].reshape(frames, rows * cols)
    pm = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    spacing = pm.get("SpacingBetweenSlices") or pm.get("SliceThickness")
    voxel_ml = float(pm.PixelSpacing[0]) * float(pm.PixelSpacing[1]) * float(spacing) / 1000.0
    out = {}
    for f, pf in enumerate(ds.PerFrameFunctionalGroupsSequence):
        seg = int(pf.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[seg] = out.get(seg, 0) + int(bits[f].sum())
    return {str(k): v * voxel_ml for k, v in out.items()}


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: readsr.py SR.dcm [SEG.dcm]", file=sys.stderr)
        return 2
    ds = pydicom.dcmread(argv[1])
    if ds.get("ValueType") != "CONTAINER" or template(ds) != "1500":
        print("not a TID 1500 report", file=sys.stderr)
        return 1
    out = {
        "sop_class_uid": str(ds.SOPClassUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "series_instance_uid": str(ds.SeriesInstanceUID),
        "study_instance_uid": str(ds.StudyInstanceUID),
        "patient_id": str(ds.get("PatientID", "")),
        "modality": str(ds.Modality),
        "template": template(ds),
        "completion_flag": str(ds.CompletionFlag),
        "verification_flag": str(ds.VerificationFlag),
        "title": code(ds.ConceptNameCodeSequence),
    }
    ot = one(ds, "121005", "DCM")
    out["observer_type"] = code(ot.ConceptCodeSequence) if ot is not None else None
    du = one(ds, "121012", "DCM")
    out["device_observer_uid"] = str(du.UID) if du is not None else None
    pr = one(ds, "121058", "DCM")
    out["procedure_reported"] = code(pr.ConceptCodeSequence) if pr is not None else None
    lib = one(ds, "111028", "DCM")
    out["image_library"] = []
    if lib is not None:
        for grp in find(lib, "126200", "DCM"):
            for entry in children(grp):
                if entry.ValueType == "IMAGE":
                    out["image_library"].append(str(entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
    out["evidence"] = []
    for st in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for se in st.ReferencedSeriesSequence:
            out["evidence"].append({
                "series_instance_uid": str(se.SeriesInstanceUID),
                "sop_instance_uids": [str(r.ReferencedSOPInstanceUID) for r in se.ReferencedSOPSequence],
            })
    meas = one(ds, "126010", "DCM")
    out["groups"] = [group(g) for g in find(meas, "125007", "DCM")] if meas is not None else []
    if len(argv) == 3:
        out["seg_volumes_ml"] = seg_volumes(argv[2])
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
