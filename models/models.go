// Package models embeds the manifests of the pretrained models segbridge
// installs (`segbridge models install`), one folder per publisher with the
// SHA-256 sums of the files it publishes, so an installed model gets exactly
// the manifest this version of segbridge was tested with.
package models

import "embed"

// FS holds brainchop/*.yaml, brainchop/SHA256SUMS and brainchop/ORIGIN
// (where the files are published, in words).
//
//go:embed brainchop/*.yaml brainchop/SHA256SUMS brainchop/ORIGIN
var FS embed.FS
