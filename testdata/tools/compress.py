#!/usr/bin/python3
"""compress.py writes a copy of a DICOM series in another transfer syntax.

It makes segbridge's compressed test series from makeseries.py's
uncompressed ones with Debian's own tools, so that every decoder segbridge
has is checked against an encoder it does not share code with:

  syntax             tool                                   transfer syntax
  j2k                gdcmconv --j2k (libgdcm-tools)         1.2.840.10008.1.2.4.90
  j2k-lossy          gdcmconv --j2k --lossy                 1.2.840.10008.1.2.4.91
  j2k-raw            opj_compress (libopenjp2-tools) from   1.2.840.10008.1.2.4.90
                     the raw samples, with --precision and
                     --sign (to test PS3.5 8.2.4)
  htj2k              ojph_compress -reversible (openjph-    1.2.840.10008.1.2.4.201
                     tools)
  htj2k-lossy        ojph_compress -qstep                   1.2.840.10008.1.2.4.203
  jpeg-baseline      dcmcjpeg +eb (dcmtk), 8-bit only       1.2.840.10008.1.2.4.50
  jpeg-extended      dcmcjpeg +ee, 12-bit                   1.2.840.10008.1.2.4.51
  jpeg-lossless      dcmcjpeg +el (process 14)              1.2.840.10008.1.2.4.57
  jpeg-lossless-sv1  dcmcjpeg +e1                           1.2.840.10008.1.2.4.70
  jpegls             dcmcjpls +el                           1.2.840.10008.1.2.4.80
  jpegls-near        dcmcjpls +en (NEAR 2)                  1.2.840.10008.1.2.4.81
  rle                dcmcrle                                1.2.840.10008.1.2.5
  deflate            dcmconv +td                            1.2.840.10008.1.2.1.99
  big-endian         dcmconv +tb                            1.2.840.10008.1.2.2

The codestreams of j2k-raw and htj2k are encapsulated with pydicom, one
fragment per frame and a Basic Offset Table. --fragments N (encapsulated
syntaxes) splits every frame into N fragments afterwards, --no-bot leaves
the Basic Offset Table empty, --garbage replaces every frame with bytes no
JPEG 2000 decoder accepts (keeping the transfer syntax). --new-uids SEED
gives the copy new study, series, instance and frame-of-reference UIDs (the
same pixels, another series for Orthanc).

Run it with Debian's interpreter (python3-pydicom, python3-numpy):

    /usr/bin/python3 testdata/tools/compress.py --syntax j2k --in ser --out ser-j2k
"""

import argparse
import concurrent.futures
import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from pydicom.encaps import encapsulate, generate_pixel_data_frame

SYNTAX_UID = {
    "j2k": "1.2.840.10008.1.2.4.90",
    "j2k-lossy": "1.2.840.10008.1.2.4.91",
    "j2k-raw": "1.2.840.10008.1.2.4.90",
    "htj2k": "1.2.840.10008.1.2.4.201",
    "htj2k-lossy": "1.2.840.10008.1.2.4.203",
    "jpeg-baseline": "1.2.840.10008.1.2.4.50",
    "jpeg-extended": "1.2.840.10008.1.2.4.51",
    "jpeg-lossless": "1.2.840.10008.1.2.4.57",
    "jpeg-lossless-sv1": "1.2.840.10008.1.2.4.70",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "jpegls-near": "1.2.840.10008.1.2.4.81",
    "rle": "1.2.840.10008.1.2.5",
    "deflate": "1.2.840.10008.1.2.1.99",
    "big-endian": "1.2.840.10008.1.2.2",
}

TOOL = {
    "j2k": ["gdcmconv", "--j2k", "--quiet"],
    "j2k-lossy": ["gdcmconv", "--j2k", "--lossy", "--irreversible", "-q", "90", "--quiet"],
    "jpeg-baseline": ["dcmcjpeg", "+eb", "-q"],
    "jpeg-extended": ["dcmcjpeg", "+ee", "-q"],
    "jpeg-lossless": ["dcmcjpeg", "+el", "-q"],
    "jpeg-lossless-sv1": ["dcmcjpeg", "+e1", "-q"],
    "jpegls": ["dcmcjpls", "+el", "-q"],
    "jpegls-near": ["dcmcjpls", "+en", "-q"],
    "rle": ["dcmcrle", "-q"],
    "deflate": ["dcmconv", "+td", "-q"],
    "big-endian": ["dcmconv", "+tb", "-q"],
}

# pydicom 2.3 predates HTJ2K (2023) and refuses to write a transfer syntax
# it does not know; teach it the three.
for _uid, _name in [("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)"),
                    ("1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)"),
                    ("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression")]:
    pydicom._uid_dict.UID_dictionary.setdefault(_uid, (_name, "Transfer Syntax", "", "", ""))

UID_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--syntax", required=True, choices=sorted(SYNTAX_UID))
    p.add_argument("--in", dest="src", required=True, help="folder of .dcm files (makeseries.py's --out)")
    p.add_argument("--out", required=True, help="folder for the copies (created)")
    p.add_argument("--new-uids", metavar="SEED", help="give the copy new UIDs derived from SEED")
    p.add_argument("--fragments", type=int, default=1, help="fragments per frame (encapsulated syntaxes)")
    p.add_argument("--no-bot", action="store_true", help="leave the Basic Offset Table empty")
    p.add_argument("--garbage", action="store_true", help="replace every frame with undecodable bytes")
    p.add_argument("--precision", type=int, help="j2k-raw: codestream precision (default BitsStored)")
    p.add_argument("--sign", choices=["u", "s"], help="j2k-raw: codestream signedness (default PixelRepresentation)")
    args = p.parse_args(argv)
    if args.fragments < 1:
        p.error("--fragments must be >= 1")
    return args


def new_uid(seed, old):
    h = hashlib.sha256(("%s\0%s" % (seed, old)).encode()).digest()
    return "2.25.%d" % int.from_bytes(h[:16], "big")


def renamed(path, seed, tmp):
    """Returns a copy of path with new UIDs (or path itself without a seed)."""
    if seed is None:
        return path
    ds = pydicom.dcmread(path)
    for kw in UID_TAGS:
        if kw in ds:
            setattr(ds, kw, new_uid(seed, getattr(ds, kw)))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = os.path.join(tmp, os.path.basename(path))
    ds.save_as(out, write_like_original=False)
    return out


def frames_of(ds):
    """Returns the stored samples of every frame, as numpy arrays."""
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    bits = ds.BitsAllocated
    dtype = {8: "u1", 16: "u2", 32: "u4"}[bits]
    if ds.PixelRepresentation == 1:
        dtype = dtype.replace("u", "i")
    arr = np.frombuffer(ds.PixelData, dtype="<" + dtype, count=n * ds.Rows * ds.Columns)
    return arr.reshape(n, ds.Rows, ds.Columns)


def encode_raw(frame, precision, signed, tmp, name):
    """J2K lossless codestream of frame from its raw samples with opj_compress."""
    raw = os.path.join(tmp, name + ".raw")
    out = os.path.join(tmp, name + ".j2k")
    bits = 8 if precision <= 8 else 16
    dtype = ("i" if signed else "u") + str(bits // 8)
    # opj_compress reads raw samples big endian.
    frame.astype(">" + dtype).tofile(raw)
    rows, cols = frame.shape
    # At most 6 resolutions (OpenJPEG's default), fewer for a small image.
    levels = max(1, min(6, min(rows, cols).bit_length()))
    subprocess.run(["opj_compress", "-i", raw, "-o", out, "-n", str(levels), "-F",
                    "%d,%d,1,%d,%s" % (cols, rows, precision, "s" if signed else "u")],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out, "rb") as f:
        return f.read()


def encode_htj2k(frame, bits_stored, lossy, tmp, name):
    """HTJ2K codestream of frame with ojph_compress.

    Signed pixels are handed over as their BitsStored-bit two's complement
    patterns, unsigned: ojph_compress 0.9 misreads negative samples. The
    codestream then says unsigned where the header says signed, which
    PS3.5 8.2.4 resolves in the header's favour."""
    rows, cols = frame.shape
    src = os.path.join(tmp, name + ".pgm")
    out = os.path.join(tmp, name + ".j2c")
    maxval = (1 << bits_stored) - 1
    with open(src, "wb") as f:
        f.write(b"P5\n%d %d\n%d\n" % (cols, rows, maxval))
        f.write((frame.astype(np.int64) & maxval).astype(">u2" if maxval > 255 else "u1").tobytes())
    mode = ["-qstep", "0.002"] if lossy else ["-reversible", "true"]
    subprocess.run(["ojph_compress", "-i", src, "-o", out] + mode, check=True, stdout=subprocess.DEVNULL)
    with open(out, "rb") as f:
        return f.read()


def compress_one(args, path, out_dir, tmp):
    src = renamed(path, args.new_uids, tmp)
    dst = os.path.join(out_dir, os.path.basename(path))
    uid = SYNTAX_UID[args.syntax]
    name = os.path.splitext(os.path.basename(path))[0]
    if args.syntax in TOOL:
        subprocess.run(TOOL[args.syntax] + [src, dst], check=True, stdout=subprocess.DEVNULL)
        if args.fragments == 1 and not args.no_bot and not args.garbage:
            return
        ds = pydicom.dcmread(dst)
        n = int(getattr(ds, "NumberOfFrames", 1) or 1)
        frames = list(generate_pixel_data_frame(ds.PixelData, n))
    else:
        ds = pydicom.dcmread(src)
        frames = []
        for i, fr in enumerate(frames_of(ds)):
            if args.syntax == "j2k-raw":
                precision = args.precision or ds.BitsStored
                signed = (args.sign or ("s" if ds.PixelRepresentation else "u")) == "s"
                frames.append(encode_raw(fr, precision, signed, tmp, "%s-%d" % (name, i)))
            else:
                frames.append(encode_htj2k(fr, ds.BitsStored, args.syntax == "htj2k-lossy", tmp, "%s-%d" % (name, i)))
        ds.file_meta.TransferSyntaxUID = uid
        ds.is_implicit_VR, ds.is_little_endian = False, True
        if args.syntax == "htj2k-lossy":
            ds.LossyImageCompression = "01"
    if args.garbage:
        frames = [b"\xff\x4f\xff\x51" + bytes(range(256)) * 2 for _ in frames]
    ds.PixelData = encapsulate(frames, fragments_per_frame=args.fragments, has_bot=not args.no_bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(dst, write_like_original=False)


def main(argv):
    args = parse_args(argv)
    if args.fragments > 1 and args.syntax in ("deflate", "big-endian"):
        sys.exit("--fragments needs an encapsulated syntax")
    os.makedirs(args.out, exist_ok=True)
    files = sorted(os.path.join(args.src, f) for f in os.listdir(args.src) if f.endswith(".dcm"))
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        for f in ex.map(lambda p: compress_one(args, p, args.out, tmp), files):
            pass
    print("compress: %d files -> %s (%s, %s)" % (len(files), args.out, args.syntax, SYNTAX_UID[args.syntax]))


if __name__ == "__main__":
    main(sys.argv[1:])
