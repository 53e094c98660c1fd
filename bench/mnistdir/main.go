// Command mnistdir prints the folder holding MNIST's IDX files, as dataset.MNISTDir finds it.
package main

import (
	"fmt"
	"os"

	"github.com/medfed/medfed/dataset"
)

func main() {
	dir, err := dataset.MNISTDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mnistdir:", err)
		os.Exit(1)
	}
	fmt.Println(dir)
}
