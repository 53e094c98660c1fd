package dataset

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultCSVMaxRows is the row limit ReadCSV applies when CSVOptions.MaxRows is zero.
const DefaultCSVMaxRows = 1_000_000

// maxCSVClasses bounds the number of classes a CSV label column may produce.
const maxCSVClasses = 1 << 16

// CSVOptions configures ReadCSV. The zero value means: label in the last column, comma
// separated, at most DefaultCSVMaxRows data rows.
type CSVOptions struct {
	// Label is the name of the label column in the header; "" means the last column.
	Label string
	// Comma is the field separator; 0 means ','.
	Comma rune
	// MaxRows is the largest number of data rows accepted; 0 means DefaultCSVMaxRows.
	MaxRows int
}

// Validate reports the first bad field of o.
func (o CSVOptions) Validate() error {
	if o.Comma != 0 && (o.Comma == '"' || o.Comma == '\r' || o.Comma == '\n' || o.Comma == utf8.RuneError || !utf8.ValidRune(o.Comma)) {
		return fmt.Errorf("csv options: Comma %q, want a separator other than a quote, newline or invalid rune", o.Comma)
	}
	if o.MaxRows < 0 {
		return fmt.Errorf("csv options: MaxRows %d, want >= 0 (0 means %d)", o.MaxRows, DefaultCSVMaxRows)
	}
	return nil
}

// ReadCSV reads a table with a header row: every column but the label is a numeric feature
// (per-sample shape [features], names in Features). Label values are either all non-negative
// integers, used as class indices (Classes = largest + 1), or else arbitrary strings, mapped
// to class indices in sorted order with the strings kept in ClassNames.
//
// Fields are trimmed of surrounding spaces. Errors wrap ErrFormat (ErrTooLarge past MaxRows)
// and name the line and column, with what was expected and what arrived.
func ReadCSV(r io.Reader, opts CSVOptions) (*Set, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	maxRows := opts.MaxRows
	if maxRows == 0 {
		maxRows = DefaultCSVMaxRows
	}
	cr := csv.NewReader(r)
	if opts.Comma != 0 {
		cr.Comma = opts.Comma
	}
	cr.FieldsPerRecord = -1 // checked below, with a clearer message
	cr.ReuseRecord = true

	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("csv: %w: empty input, want a header row", ErrFormat)
	}
	if err != nil {
		return nil, csvError(err)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // byte order mark
	cols := make([]string, len(header))
	for j, h := range header {
		cols[j] = strings.TrimSpace(h)
	}
	if len(cols) < 2 {
		return nil, fmt.Errorf("csv: %w: header has %d column, want at least 2 (features and a label)", ErrFormat, len(cols))
	}
	labelCol := len(cols) - 1
	if opts.Label != "" {
		labelCol = slices.Index(cols, opts.Label)
		if labelCol < 0 {
			return nil, fmt.Errorf("csv: %w: no label column %q in header %q", ErrFormat, opts.Label, cols)
		}
	}
	seen := make(map[string]int, len(cols))
	for j, c := range cols {
		if c == "" {
			return nil, fmt.Errorf("csv: %w: header column %d is empty, want a name", ErrFormat, j+1)
		}
		if k, dup := seen[c]; dup {
			return nil, fmt.Errorf("csv: %w: header columns %d and %d are both named %q", ErrFormat, k+1, j+1, c)
		}
		seen[c] = j
	}
	features := slices.Delete(slices.Clone(cols), labelCol, labelCol+1)

	var x []float32
	var labels []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line with a separator that is not whitespace
		}
		if len(labels) == maxRows {
			return nil, fmt.Errorf("csv: %w: line %d: more than %d data rows (raise CSVOptions.MaxRows)", ErrTooLarge, line, maxRows)
		}
		if len(rec) != len(cols) {
			return nil, fmt.Errorf("csv: %w: line %d: %d fields, want %d as in the header", ErrFormat, line, len(rec), len(cols))
		}
		for j, field := range rec {
			field = strings.TrimSpace(field)
			if j == labelCol {
				labels = append(labels, field)
				continue
			}
			v, err := strconv.ParseFloat(field, 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("csv: %w: line %d, column %q: got %q, want a finite number", ErrFormat, line, cols[j], field)
			}
			x = append(x, float32(v))
		}
		if labels[len(labels)-1] == "" {
			return nil, fmt.Errorf("csv: %w: line %d, label column %q: empty, want a class", ErrFormat, line, cols[labelCol])
		}
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("csv: %w: header but no data rows", ErrFormat)
	}

	s := &Set{
		X:        x,
		Y:        make([]float32, len(labels)),
		Shape:    []int{len(features)},
		Features: features,
	}
	if ids, ok := classIDs(labels); ok {
		for i, id := range ids {
			s.Y[i] = float32(id)
			s.Classes = max(s.Classes, id+1)
		}
		if s.Classes > maxCSVClasses {
			return nil, fmt.Errorf("csv: %w: label column %q: class id %d, want < %d", ErrTooLarge, cols[labelCol], s.Classes-1, maxCSVClasses)
		}
		return s, nil
	}
	names := slices.Sorted(func(yield func(string) bool) {
		uniq := make(map[string]bool)
		for _, l := range labels {
			if !uniq[l] {
				uniq[l] = true
				if !yield(l) {
					return
				}
			}
		}
	})
	if len(names) > maxCSVClasses {
		return nil, fmt.Errorf("csv: %w: label column %q: %d distinct labels, want at most %d", ErrTooLarge, cols[labelCol], len(names), maxCSVClasses)
	}
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	for i, l := range labels {
		s.Y[i] = float32(index[l])
	}
	s.Classes = len(names)
	s.ClassNames = names
	return s, nil
}

// classIDs parses labels as non-negative integer class ids ("3" or "3.0"); ok is false if
// any label is something else, in which case labels are class names.
func classIDs(labels []string) (ids []int, ok bool) {
	ids = make([]int, len(labels))
	for i, l := range labels {
		v, err := strconv.ParseFloat(l, 64)
		if err != nil || v < 0 || v != math.Trunc(v) || v >= 1<<24 {
			return nil, false
		}
		ids[i] = int(v)
	}
	return ids, true
}

// csvError wraps an encoding/csv error (which carries the line) as ErrFormat, or passes an
// I/O error through.
func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("csv: %w: %w", ErrFormat, err)
	}
	return fmt.Errorf("csv: %w", err)
}

// LoadCSV reads the CSV file at path as ReadCSV does; errors name the file. The set's Name
// is the file's base name without extension.
func LoadCSV(path string, opts CSVOptions) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := ReadCSV(f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return s, nil
}
