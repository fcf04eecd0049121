"""makebig.py OUTDIR [SLICES]: a 512x512 MR series of SLICES slices (default
200; 16-bit, 0.5 mm pixels, 1 mm slices) of smooth synthetic anatomy, for the
download and growth benchmarks. The anatomy is an ellipsoid scaled to the
slice count, so a series of twice the slices is twice the head. Run with
Debian's /usr/bin/python3 (pydicom, numpy)."""
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR = "1.2.840.10008.5.1.4.1.1.4"


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    rows, cols = 512, 512
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    for k in range(n):
        z = (k - n / 2) / (n / 2)
        r2 = ((x - cols / 2) / 200) ** 2 + ((y - rows / 2) / 230) ** 2 + z**2
        img = np.where(r2 < 1, 800 + 300 * np.cos(x / 17) * np.sin(y / 23 + k / 9), 0)
        px = np.clip(img, 0, 4095).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MR
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID = "BENCH^BIG", "BENCH-BIG-%d" % n
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, k + 1
        ds.SeriesDescription = "synthetic 512x512x%d" % n
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-128, -128, -100 + k]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 1
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = px.tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(os.path.join(out, "%04d.dcm" % k), write_like_original=False)


if __name__ == "__main__":
    main()
