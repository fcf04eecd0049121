//go:build !cgo

package codec

import "errors"

// Without cgo there is no dlopen: a child reports CharLS as unavailable,
// and JPEG-LS jobs fail saying so.

type charLS struct{}

func loadCharLS(string) (*charLS, error) {
	return nil, errors.New("segbridge was built without cgo, so it cannot load libcharls")
}

func (c *charLS) version() string { return "" }

func (c *charLS) decode(*request, []byte) error { return errors.New("built without cgo") }
