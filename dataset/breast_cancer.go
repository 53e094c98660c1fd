package dataset

import (
	"bytes"
	_ "embed"
	"fmt"
)

// breastCancerCSV is Breast Cancer Wisconsin (Diagnostic): 569 patients, 30 numeric features
// of cell nuclei from fine-needle-aspirate images, label column "malignant" (1 = malignant,
// 212 rows; 0 = benign, 357 rows). UCI Machine Learning Repository (Wolberg, Street,
// Mangasarian, 1995), CC BY 4.0, from scikit-learn's copy with column names added.
//
//go:embed testdata/breast_cancer_wdbc.csv
var breastCancerCSV []byte

// BreastCancerLabel is the label column of the Breast Cancer Wisconsin table.
const BreastCancerLabel = "malignant"

// LoadBreastCancer loads the Breast Cancer Wisconsin (Diagnostic) table: 569 samples of 30
// features, two classes, ClassNames ["benign" "malignant"]. If path is "", it reads the copy
// embedded in this package; otherwise a CSV file with the same layout (label column
// "malignant", 0 or 1).
func LoadBreastCancer(path string) (*Set, error) {
	var s *Set
	var err error
	opts := CSVOptions{Label: BreastCancerLabel}
	if path == "" {
		s, err = ReadCSV(bytes.NewReader(breastCancerCSV), opts)
		if err != nil {
			return nil, fmt.Errorf("embedded breast cancer data: %w", err)
		}
		s.Name = "breast_cancer_wdbc"
	} else if s, err = LoadCSV(path, opts); err != nil {
		return nil, err
	}
	if s.Classes > 2 || (s.ClassNames != nil) {
		return nil, fmt.Errorf("%s: %w: label column %q has classes %v, want 0 (benign) and 1 (malignant)", s.Name, ErrFormat, BreastCancerLabel, classList(s))
	}
	s.Classes = 2
	s.ClassNames = []string{"benign", "malignant"}
	return s, nil
}

func classList(s *Set) any {
	if s.ClassNames != nil {
		return s.ClassNames
	}
	return fmt.Sprintf("0..%d", s.Classes-1)
}
