#!/usr/bin/env node
// dcmjs-readseg.js reads a DICOM SEG with dcmjs, the library the OHIF viewer
// loads SEGs with, to show that a viewer finds what segbridge wrote.
//
// Usage: node testdata/tools/dcmjs-readseg.js SEG.dcm TRUTH.json LABELMAP.u8
//
// dcmjs is found through NODE_PATH (make deps-npm installs it into
// .deps/node/node_modules). TRUTH.json is makeseries.py's description of the
// source series: its slices in spatial order, each with SOPInstanceUID,
// position and frame number (0 for single-frame instances).
//
// It prints JSON to stdout:
//   {"segments": [{"number", "label"}],
//    "frames": [{"segment", "ref_sop_instance_uid", "ref_frame_number"}],
//    "segments_on_slice": [[segment numbers] per source slice]}
// and writes LABELMAP.u8: the Cornerstone adapter's label map on the source
// grid, one byte per voxel (slice k, row, column), 0 or the segment number.
// The adapter (dcmjs.adapters.Cornerstone.Segmentation.generateToolState)
// maps every SEG frame to a source image through its SourceImageSequence
// (ReferencedSOPInstanceUID, and ReferencedFrameNumber for multi-frame
// sources), exactly as OHIF's cornerstone 4 path does.
"use strict";

const fs = require("fs");
const dcmjs = require("dcmjs");

function main(argv) {
  if (argv.length !== 3) {
    console.error("usage: dcmjs-readseg.js SEG.dcm TRUTH.json LABELMAP.u8");
    return 2;
  }
  const [segPath, truthPath, outPath] = argv;
  dcmjs.log.setLevel("error");
  const buf = fs.readFileSync(segPath);
  const arrayBuffer = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const truth = JSON.parse(fs.readFileSync(truthPath, "utf8"));

  // Plain reading: DicomMessage + naturalize.
  const dicomData = dcmjs.data.DicomMessage.readFile(arrayBuffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dicomData.dict);
  const asArray = (x) => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
  const segments = asArray(ds.SegmentSequence).map((s) => ({
    number: Number(s.SegmentNumber),
    label: String(s.SegmentLabel),
  }));
  const frames = asArray(ds.PerFrameFunctionalGroupsSequence).map((pf) => {
    const deriv = asArray(pf.DerivationImageSequence)[0] || {};
    const src = asArray(deriv.SourceImageSequence)[0] || {};
    const segId = asArray(pf.SegmentIdentificationSequence)[0] || {};
    return {
      segment: Number(segId.ReferencedSegmentNumber),
      ref_sop_instance_uid: src.ReferencedSOPInstanceUID,
      ref_frame_number: src.ReferencedFrameNumber === undefined ? null : Number(src.ReferencedFrameNumber),
    };
  });

  // The viewer path: a cornerstone image stack of the source series, with
  // the metadata cornerstone's providers would give, and the adapter.
  const imageIds = truth.slices.map((s, k) =>
    s.frame > 0 ? `segbridge:${s.sop_instance_uid}?frame=${s.frame - 1}` : `segbridge:${s.sop_instance_uid}#${k}`);
  const byId = new Map(imageIds.map((id, k) => [id, truth.slices[k]]));
  const [row, col] = truth.direction;
  const metadataProvider = {
    get(type, imageId) {
      const s = byId.get(imageId);
      if (!s) return undefined;
      switch (type) {
        case "sopCommonModule":
          return { sopInstanceUID: s.sop_instance_uid, sopClassUID: "" };
        case "imagePixelModule":
          return { rows: truth.rows, columns: truth.cols };
        case "imagePlaneModule":
          return {
            rowCosines: row, columnCosines: col, rows: truth.rows, columns: truth.cols,
            imagePositionPatient: s.position, frameOfReferenceUID: truth.frame_of_reference_uid,
          };
        case "generalSeriesModule":
          return { seriesInstanceUID: truth.series_instance_uid };
        case "instance":
          return {
            SOPInstanceUID: s.sop_instance_uid, ImagePositionPatient: s.position,
            FrameOfReferenceUID: truth.frame_of_reference_uid, SeriesInstanceUID: truth.series_instance_uid,
          };
      }
      return undefined;
    },
  };
  const state = dcmjs.adapters.Cornerstone.Segmentation.generateToolState(imageIds, arrayBuffer, metadataProvider);
  if (!state || !state.labelmapBufferArray) {
    console.error("generateToolState returned no label map");
    return 1;
  }
  if (state.labelmapBufferArray.length !== 1) {
    console.error(`generateToolState found overlapping segments (${state.labelmapBufferArray.length} label maps)`);
    return 1;
  }
  const lm = new Uint16Array(state.labelmapBufferArray[0]);
  const out = Buffer.alloc(lm.length);
  for (let i = 0; i < lm.length; i++) {
    out[i] = lm[i];
  }
  fs.writeFileSync(outPath, out);
  const onSlice = imageIds.map((_, k) => state.segmentsOnFrame[k] || []);
  process.stdout.write(JSON.stringify({ segments, frames, segments_on_slice: onSlice }));
  return 0;
}

process.exitCode = main(process.argv.slice(2));
