#!/usr/bin/env node
// dcmjs-readsr.js reads a TID 1500 measurement report with dcmjs (the DICOM
// library of the OHIF viewer): it parses the file with DicomMessage, names
// its attributes with naturalizeDataset, and walks the content tree by
// concept names, as a viewer's SR loader does.
//
// Usage: node testdata/tools/dcmjs-readsr.js SR.dcm
//
// dcmjs is found through NODE_PATH (make deps-npm installs it into
// .deps/node/node_modules). It prints JSON to stdout:
//   {"sop_class_uid", "template",
//    "groups": [{"tracking_identifier", "tracking_uid", "finding",
//                "segment_number", "seg_sop_instance_uid",
//                "source_series_uid", "volume", "unit"}]}
"use strict";

const fs = require("fs");
const dcmjs = require("dcmjs");

const asArray = (x) => (x === undefined || x === null ? [] : Array.isArray(x) ? x : [x]);
const first = (x) => asArray(x)[0] || {};
const nameOf = (item) => {
  const c = first(item.ConceptNameCodeSequence);
  return `${c.CodeValue}|${c.CodingSchemeDesignator}`;
};
const child = (item, key) => asArray(item.ContentSequence).find((c) => nameOf(c) === key);
const children = (item, key) => asArray(item.ContentSequence).filter((c) => nameOf(c) === key);

function main(argv) {
  if (argv.length !== 1) {
    console.error("usage: dcmjs-readsr.js SR.dcm");
    return 2;
  }
  dcmjs.log.setLevel("error");
  const buf = fs.readFileSync(argv[0]);
  const arrayBuffer = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const dicomData = dcmjs.data.DicomMessage.readFile(arrayBuffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dicomData.dict);

  const measurements = child(ds, "126010|DCM") || {};
  const groups = children(measurements, "125007|DCM").map((g) => {
    const num = child(g, "118565006|SCT") || {};
    const mv = first(num.MeasuredValueSequence);
    const ref = first((child(g, "121191|DCM") || {}).ReferencedSOPSequence);
    return {
      tracking_identifier: (child(g, "112039|DCM") || {}).TextValue,
      tracking_uid: (child(g, "112040|DCM") || {}).UID,
      finding: first((child(g, "121071|DCM") || {}).ConceptCodeSequence).CodeMeaning,
      segment_number: Number(ref.ReferencedSegmentNumber),
      seg_sop_instance_uid: ref.ReferencedSOPInstanceUID,
      source_series_uid: (child(g, "121232|DCM") || {}).UID,
      volume: Number(mv.NumericValue),
      unit: first(mv.MeasurementUnitsCodeSequence).CodeValue,
    };
  });
  process.stdout.write(JSON.stringify({
    sop_class_uid: ds.SOPClassUID,
    template: first(ds.ContentTemplateSequence).TemplateIdentifier,
    groups,
  }));
  return 0;
}

process.exitCode = main(process.argv.slice(2));
