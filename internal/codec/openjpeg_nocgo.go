//go:build !cgo

package codec

import "errors"

// Without cgo there is no dlopen: a child reports OpenJPEG as unavailable,
// and JPEG 2000 jobs fail saying so.

type openJPEG struct{}

func loadOpenJPEG(string) (*openJPEG, error) {
	return nil, errors.New("segbridge was built without cgo, so it cannot load libopenjp2")
}

func (o *openJPEG) version() string { return "" }

func (o *openJPEG) decode(*request, []byte) error { return errors.New("built without cgo") }

func fault(op byte) error { return errors.New("built without cgo") }
