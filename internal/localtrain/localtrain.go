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
	Seed      uint64  // initialisation, shuffling, dropout and the table split; default 1
	TestSplit float64 // share of a table held out for testing; default 0.2
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
	return c
}

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
}

// Hooks receive progress; nil hooks are skipped.
type Hooks struct {
	Loaded func(train, test *dataset.Set, params int)
	Batch  func(epoch, done, total int)
	Epoch  func(model.EpochStats)
}

// Run trains cfg.Model on cfg.Dataset and evaluates it on the test split.
func Run(ctx context.Context, cfg Config, hooks Hooks) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	cfg = cfg.withDefaults()
	train, test, err := Load(cfg)
	if err != nil {
		return Result{}, err
	}
	spec, err := model.Architecture(cfg.Model, train.Shape, train.Classes)
	if err != nil {
		return Result{}, err
	}
	m, err := model.Build(spec, cfg.Seed)
	if err != nil {
		return Result{}, err
	}
	tr, err := model.NewTrainer(m, cfg.trainConfig())
	if err != nil {
		return Result{}, err
	}
	res := Result{Model: cfg.Model, Dataset: cfg.Dataset, Params: m.NumParams(), TrainSamples: train.Len(), TestSamples: test.Len()}
	if hooks.Loaded != nil {
		hooks.Loaded(train, test, res.Params)
	}
	start := time.Now()
	for e := 1; e <= cfg.Epochs; e++ {
		var progress func(done, total int)
		if hooks.Batch != nil {
			progress = func(done, total int) { hooks.Batch(e, done, total) }
		}
		st, err := tr.Epoch(ctx, train.X, train.Y, progress)
		if err != nil {
			return res, fmt.Errorf("epoch %d: %w", e, err)
		}
		st.Epoch = e
		res.Epochs = append(res.Epochs, st)
		if hooks.Epoch != nil {
			hooks.Epoch(st)
		}
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
		if cfg.Dataset == "breast-cancer" && cfg.CSV == "" {
			all, err = dataset.LoadBreastCancer("")
		} else {
			all, err = dataset.LoadCSV(cfg.CSV, dataset.CSVOptions{Label: cfg.Label})
		}
		if err != nil {
			return nil, nil, err
		}
		train, test = all.Split(cfg.TestSplit, int64(cfg.Seed))
		z := dataset.FitStandardizer(train)
		if err := z.Apply(train); err != nil {
			return nil, nil, err
		}
		if err := z.Apply(test); err != nil {
			return nil, nil, err
		}
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
