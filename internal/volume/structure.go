package volume

// CheckStructure validates the Part-10 framing and every element length of
// data, as ParseInstance does before the DICOM library sees a file, and
// returns the file's transfer syntax UID. Readers of other DICOM objects from
// outside (a SEG read back from Orthanc) call it first, so that a length field
// that runs past the end of the data cannot make the library allocate or loop
// on it.
func CheckStructure(data []byte) (transferSyntax string, err error) {
	scan, err := checkStructure(data)
	return scan.ts, err
}
