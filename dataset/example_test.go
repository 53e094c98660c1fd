package dataset_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/medfed/medfed/dataset"
)

func ExampleReadCSV() {
	table := `age,systolic_bp,diagnosis
63,145,sick
41,120,healthy
70,160,sick
35,118,healthy
`
	s, err := dataset.ReadCSV(strings.NewReader(table), dataset.CSVOptions{Label: "diagnosis"})
	if err != nil {
		log.Fatal(err)
	}
	train, test := s.Split(0.5, 1)
	z := dataset.FitStandardizer(train) // statistics of the training part only
	if err := z.Apply(train); err != nil {
		log.Fatal(err)
	}
	if err := z.Apply(test); err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Features, s.ClassNames, s.ClassCounts())
	fmt.Println(train.Len(), "train,", test.Len(), "test, per class:", train.ClassCounts(), test.ClassCounts())
	// Output:
	// [age systolic_bp] [healthy sick] [2 2]
	// 2 train, 2 test, per class: [1 1] [1 1]
}

func ExampleLoadMNIST() {
	train, test, err := dataset.LoadMNIST("") // finds the copy in the Go module cache
	if err != nil {
		log.Fatal(err)
	}
	seq, err := train.Sequence() // 28 steps of 28 pixels, for recurrent models
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(train.Len(), test.Len(), train.Shape, seq.Shape, train.ClassCounts()[:2])
	// Prints: 60000 10000 [28 28 1] [28 28] [5923 6742]
}

func ExampleLoadBreastCancer() {
	s, err := dataset.LoadBreastCancer("") // embedded copy
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Len(), s.Size(), s.ClassNames, s.ClassCounts())
	// Output: 569 30 [benign malignant] [357 212]
}
