#!/usr/bin/python3
"""Read a preview (Secondary Capture) instance independently of segbridge.

Usage: /usr/bin/python3 testdata/tools/readpreview.py PREVIEW.dcm OUT.rgb

Run it with Debian's /usr/bin/python3 (python3-pydicom, python3-numpy). It
writes the decoded pixels to OUT.rgb (rows x columns x 3 bytes, pydicom's
pixel_array) and prints JSON: sop_class_uid, modality, image_type,
burned_in_annotation, conversion_type, photometric_interpretation, rows,
columns, patient_id, study_instance_uid, series_instance_uid,
source_sop_instance_uid, derivation_description.
"""

import json
import sys

import numpy as np
import pydicom


def main(argv):
    if len(argv) != 3:
        print("usage: readpreview.py PREVIEW.dcm OUT.rgb", file=sys.stderr)
        return 2
    ds = pydicom.dcmread(argv[1])
    px = ds.pixel_array
    if px.ndim != 3 or px.shape[2] != 3:
        print("not an RGB image: pixel array shape %s" % (px.shape,), file=sys.stderr)
        return 1
    np.ascontiguousarray(px, dtype=np.uint8).tofile(argv[2])
    src = ds.get("SourceImageSequence")
    json.dump({
        "sop_class_uid": str(ds.SOPClassUID),
        "modality": str(ds.Modality),
        "image_type": [str(x) for x in ds.ImageType],
        "burned_in_annotation": str(ds.get("BurnedInAnnotation", "")),
        "conversion_type": str(ds.get("ConversionType", "")),
        "photometric_interpretation": str(ds.PhotometricInterpretation),
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "patient_id": str(ds.get("PatientID", "")),
        "study_instance_uid": str(ds.StudyInstanceUID),
        "series_instance_uid": str(ds.SeriesInstanceUID),
        "source_sop_instance_uid": str(src[0].ReferencedSOPInstanceUID) if src else None,
        "derivation_description": str(ds.get("DerivationDescription", "")),
    }, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
