package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/medfed/medfed/model"
)

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	_, err := fmt.Fprintf(stdout, "medfed %s (%s, %s/%s)\n", model.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
