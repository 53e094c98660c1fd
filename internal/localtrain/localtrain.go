package localtrain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/model"
)

// Config is one training job. Zero fields take DefaultConfig's values.
type Config struct {
	Model     string  // cnn, mlp, rnn, lstm or gru
	Dataset   string  // mnist, mnist-seq, fashion-mnist, breast-cancer or csv
	DataDir   string  // overrides where image data sets are found
	CSV       string  // path of the table when Dataset is csv (or to override breast-cancer)
	Label     string  // label column of the table; default: the last column
	Epochs    int     // default 5
	BatchSize int     // default 32
	LR        float64 // default: the optimizer's (Adam 0.001, SGD 0.01)
	Optimizer string  // adam (default) or sgd
	Momentum  float64 // SGD momentum
	Seed      uint64  // initialisation, shuffling, dropout and the table's split or folds; default 1
	TestSplit float64 // share of a table held out for testing when Folds is 1; default 0.2
	Folds     int     // tables: k-fold cross-validation (default 5); 1 holds out TestSplit instead
	Out       string  // if set, the trained model is saved there as safetensors
}

// DefaultConfig reproduces the seed example: the CNN on MNIST, 5 epochs of Adam at batch 32.
func DefaultConfig() Config {
	return Config{Model: "cnn", Dataset: "mnist", Epochs: 5, BatchSize: 32, Optimizer: "adam", Seed: 1, TestSplit: 0.2}
}

var (
	models   = []string{"cnn", "mlp", "rnn", "lstm", "gru"}
	datasets = []string{"mnist", "mnist-seq", "fashion-mnist", "breast-cancer", "csv"}
)

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Model == "" {
		c.Model = d.Model
	}
	if c.Dataset == "" {
		c.Dataset = d.Dataset
	}
	if c.Epochs == 0 {
		c.Epochs = d.Epochs
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.Optimizer == "" {
		c.Optimizer = d.Optimizer
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	if c.TestSplit == 0 {
		c.TestSplit = d.TestSplit
	}
	if c.Folds == 0 && c.isTable() {
		c.Folds = DefaultFolds
	}
	return c
}

// DefaultFolds is the number of cross-validation folds for tables. A few hundred patients
// leave a single held-out fifth too few to measure accuracy by: on the Breast Cancer table
// the 114 test patients of one split put the same MLP anywhere from 0.947 to 0.982 over
// seeds 1-8. Cross-validation tests every patient once.
const DefaultFolds = 5

// CVFolds returns the number of cross-validation folds Run uses for c, or 0 when it
// tests on a held-out set.
func (c Config) CVFolds() int {
	if c = c.withDefaults(); c.isTable() && c.Folds > 1 {
		return c.Folds
	}
	return 0
}

func (c Config) isTable() bool { return c.Dataset == "breast-cancer" || c.Dataset == "csv" }

// Validate names the first invalid field.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case !slices.Contains(models, c.Model):
		return fmt.Errorf("model %q, want one of %v", c.Model, models)
	case !slices.Contains(datasets, c.Dataset):
		return fmt.Errorf("dataset %q, want one of %v", c.Dataset, datasets)
	case c.Dataset == "csv" && c.CSV == "":
		return errors.New("dataset csv needs a table file (--csv FILE)")
	case c.Model == "cnn" && (c.Dataset == "breast-cancer" || c.Dataset == "csv" || c.Dataset == "mnist-seq"):
		return fmt.Errorf("model cnn needs images, dataset %s has none (use mlp, or an image data set)", c.Dataset)
	case (c.Model == "rnn" || c.Model == "lstm" || c.Model == "gru") && (c.Dataset == "breast-cancer" || c.Dataset == "csv"):
		return fmt.Errorf("model %s needs sequences, dataset %s is a table (use mlp)", c.Model, c.Dataset)
	case !(c.TestSplit > 0 && c.TestSplit < 1):
		return fmt.Errorf("test split %v, want a fraction in (0, 1)", c.TestSplit)
	case !c.isTable() && c.Folds != 0:
		return fmt.Errorf("folds apply to tables; data set %s has a fixed test set", c.Dataset)
	case c.Folds < 0:
		return fmt.Errorf("folds %d, want at least 2 for cross-validation, or 1 for a single held-out split", c.Folds)
	}
	return c.trainConfig().Validate()
}

func (c Config) trainConfig() model.TrainConfig {
	return model.TrainConfig{
		Epochs:    c.Epochs,
		BatchSize: c.BatchSize,
		Loss:      model.SparseCategoricalCrossentropy,
		Optimizer: model.OptimizerConfig{Name: c.Optimizer, LearningRate: c.LR, Momentum: c.Momentum},
		Seed:      c.Seed,
	}
}

// Result is what a training job reports.
type Result struct {
	Model        string             `json:"model"`
	Dataset      string             `json:"dataset"`
	Params       int                `json:"params"`
	Epochs       []model.EpochStats `json:"epochs"`
	TestLoss     float64            `json:"test_loss"`
	TestAccuracy float64            `json:"test_accuracy"`
	TrainSeconds float64            `json:"train_seconds"`
	TrainSamples int                `json:"-"`
	TestSamples  int                `json:"-"`
	Folds        []FoldResult       `json:"-"` // cross-validation only
}

// FoldResult is one fold of a cross-validation.
type FoldResult struct {
	Fold         int // from 1
	TestSamples  int
	TestLoss     float64
	TestAccuracy float64
}

// Hooks receive progress; nil hooks are skipped.
type Hooks struct {
	// Loaded reports the data, once: in a cross-validation, the first fold's parts.
	Loaded func(train, test *dataset.Set, params int)
	// Fold reports, in a cross-validation, that fold (from 1) of k starts; fold 0 is the
	// final fit on every sample, when the model is to be saved.
	Fold  func(fold, k int)
	Batch func(epoch, done, total int)
	Epoch func(model.EpochStats)
	// FoldDone reports the test result of a fold.
	FoldDone func(FoldResult)
}

// Run trains cfg.Model on cfg.Dataset and evaluates it on the test split. A table is
// evaluated by cross-validation unless cfg.Folds is 1: one model per fold, each trained on
// the other folds (standardised with their statistics) and tested on its fold, with the
// same seed. The result's test loss and accuracy are then over every sample, each tested
// once; its epochs average the folds' training loss and accuracy and add up their times.
// With cfg.Out set, a final model is trained on every sample and saved.
func Run(ctx context.Context, cfg Config, hooks Hooks) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	cfg = cfg.withDefaults()
	if cfg.isTable() && cfg.Folds > 1 {
		return crossValidate(ctx, cfg, hooks)
	}
	train, test, err := Load(cfg)
	if err != nil {
		return Result{}, err
	}
	m, err := build(cfg, train)
	if err != nil {
		return Result{}, err
	}
	res := Result{Model: cfg.Model, Dataset: cfg.Dataset, Params: m.NumParams(), TrainSamples: train.Len(), TestSamples: test.Len()}
	if hooks.Loaded != nil {
		hooks.Loaded(train, test, res.Params)
	}
	start := time.Now()
	if res.Epochs, err = fit(ctx, cfg, m, train, hooks); err != nil {
		return res, err
	}
	res.TrainSeconds = time.Since(start).Seconds()
	res.TestLoss, res.TestAccuracy, err = m.Evaluate(test.X, test.Y, test.Len(), model.SparseCategoricalCrossentropy)
	if err != nil {
		return res, fmt.Errorf("evaluate: %w", err)
	}
	if cfg.Out != "" {
		meta := map[string]string{"dataset": cfg.Dataset, "test_accuracy": fmt.Sprintf("%.4f", res.TestAccuracy)}
		if err := model.SaveFile(cfg.Out, m, meta); err != nil {
			return res, err
		}
	}
	return res, nil
}

// crossValidate is Run for a table with cfg.Folds > 1.
func crossValidate(ctx context.Context, cfg Config, hooks Hooks) (Result, error) {
	all, err := loadTable(cfg)
	if err != nil {
		return Result{}, err
	}
	if all.Len() < cfg.Folds {
		return Result{}, fmt.Errorf("%d-fold cross-validation needs at least %d rows, the table has %d (use fewer folds)", cfg.Folds, cfg.Folds, all.Len())
	}
	res := Result{Model: cfg.Model, Dataset: cfg.Dataset, TestSamples: all.Len()}
	start := time.Now()
	var loss, correct float64
	for f, fold := range all.Folds(cfg.Folds, int64(cfg.Seed)) {
		train, test := fold.Train, fold.Test
		if err := standardise(train, test); err != nil {
			return res, err
		}
		m, err := build(cfg, train)
		if err != nil {
			return res, err
		}
		if f == 0 {
			res.Params, res.TrainSamples = m.NumParams(), train.Len()
			if hooks.Loaded != nil {
				hooks.Loaded(train, test, res.Params)
			}
		}
		if hooks.Fold != nil {
			hooks.Fold(f+1, cfg.Folds)
		}
		epochs, err := fit(ctx, cfg, m, train, hooks)
		if err != nil {
			return res, fmt.Errorf("fold %d: %w", f+1, err)
		}
		for e, st := range epochs {
			if f == 0 {
				res.Epochs = append(res.Epochs, model.EpochStats{Epoch: st.Epoch})
			}
			r := &res.Epochs[e]
			r.Loss += st.Loss / float64(cfg.Folds)
			r.Accuracy += st.Accuracy / float64(cfg.Folds)
			r.Seconds += st.Seconds
		}
		fr := FoldResult{Fold: f + 1, TestSamples: test.Len()}
		if fr.TestLoss, fr.TestAccuracy, err = m.Evaluate(test.X, test.Y, test.Len(), model.SparseCategoricalCrossentropy); err != nil {
			return res, fmt.Errorf("fold %d: evaluate: %w", f+1, err)
		}
		res.Folds = append(res.Folds, fr)
		if hooks.FoldDone != nil {
			hooks.FoldDone(fr)
		}
		loss += fr.TestLoss * float64(fr.TestSamples)
		correct += fr.TestAccuracy * float64(fr.TestSamples)
	}
	res.TrainSeconds = time.Since(start).Seconds()
	res.TestLoss, res.TestAccuracy = loss/float64(all.Len()), correct/float64(all.Len())
	if cfg.Out == "" {
		return res, nil
	}
	// The deliverable is trained on everything; its accuracy is the cross-validation's.
	if err := standardise(all); err != nil {
		return res, err
	}
	m, err := build(cfg, all)
	if err != nil {
		return res, err
	}
	if hooks.Fold != nil {
		hooks.Fold(0, cfg.Folds)
	}
	if _, err := fit(ctx, cfg, m, all, hooks); err != nil {
		return res, fmt.Errorf("final model: %w", err)
	}
	meta := map[string]string{"dataset": cfg.Dataset, "test_accuracy": fmt.Sprintf("%.4f", res.TestAccuracy),
		"evaluation": fmt.Sprintf("%d-fold cross-validation", cfg.Folds)}
	return res, model.SaveFile(cfg.Out, m, meta)
}

// build makes cfg.Model for the shape and classes of train.
func build(cfg Config, train *dataset.Set) (*model.Sequential, error) {
	spec, err := model.Architecture(cfg.Model, train.Shape, train.Classes)
	if err != nil {
		return nil, err
	}
	return model.Build(spec, cfg.Seed)
}

// fit trains m on train for cfg.Epochs and returns the epochs' statistics.
func fit(ctx context.Context, cfg Config, m *model.Sequential, train *dataset.Set, hooks Hooks) ([]model.EpochStats, error) {
	tr, err := model.NewTrainer(m, cfg.trainConfig())
	if err != nil {
		return nil, err
	}
	var epochs []model.EpochStats
	for e := 1; e <= cfg.Epochs; e++ {
		var progress func(done, total int)
		if hooks.Batch != nil {
			progress = func(done, total int) { hooks.Batch(e, done, total) }
		}
		st, err := tr.Epoch(ctx, train.X, train.Y, progress)
		if err != nil {
			return epochs, fmt.Errorf("epoch %d: %w", e, err)
		}
		st.Epoch = e
		epochs = append(epochs, st)
		if hooks.Epoch != nil {
			hooks.Epoch(st)
		}
	}
	return epochs, nil
}

// Load returns the train and test sets cfg names, shaped for cfg.Model: tables are split
// with cfg.Seed and standardised with statistics of the training part only.
func Load(cfg Config) (train, test *dataset.Set, err error) {
	cfg = cfg.withDefaults()
	switch cfg.Dataset {
	case "mnist", "mnist-seq":
		train, test, err = dataset.LoadMNIST(cfg.DataDir)
	case "fashion-mnist":
		train, test, err = dataset.LoadFashionMNIST(cfg.DataDir)
	case "breast-cancer", "csv":
		var all *dataset.Set
		if all, err = loadTable(cfg); err != nil {
			return nil, nil, err
		}
		train, test = all.Split(cfg.TestSplit, int64(cfg.Seed))
		err = standardise(train, test)
	}
	if err != nil {
		return nil, nil, err
	}
	if cfg.Dataset == "mnist-seq" {
		if train, err = train.Sequence(); err != nil {
			return nil, nil, err
		}
		if test, err = test.Sequence(); err != nil {
			return nil, nil, err
		}
	}
	return train, test, nil
}

// loadTable reads the table cfg names.
func loadTable(cfg Config) (*dataset.Set, error) {
	if cfg.Dataset == "breast-cancer" && cfg.CSV == "" {
		return dataset.LoadBreastCancer("")
	}
	return dataset.LoadCSV(cfg.CSV, dataset.CSVOptions{Label: cfg.Label})
}

// standardise scales the features of every set with the statistics of the first.
func standardise(fitted *dataset.Set, others ...*dataset.Set) error {
	z := dataset.FitStandardizer(fitted)
	for _, s := range append([]*dataset.Set{fitted}, others...) {
		if err := z.Apply(s); err != nil {
			return err
		}
	}
	return nil
}
