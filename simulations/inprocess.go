package simulations

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/model"
)

// runInProcess is the scale mode: no coordinator and no network, just the hospitals'
// local training (package model) and the coordinator's aggregation (package aggregation)
// in one process. The training set is reordered once so that every hospital's shard is a
// contiguous, read-only slice of one shared array (no per-hospital copies); at most
// cfg.Parallel hospitals train at once, each on a worker's model replica, so memory grows
// with the workers and the updates, not with the hospitals' data. Updates are aggregated
// in hospital order, so results do not depend on scheduling.
func runInProcess(ctx context.Context, cfg Config, spec model.Spec, train, test *dataset.Set, parts [][]int, byz []bool, sum *Summary, hooks Hooks) error {
	t0 := time.Now()
	strat, _ := aggregation.ParseStrategy(cfg.Strategy)
	workers := cfg.Parallel
	if workers <= 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	sum.Deployment = fmt.Sprintf("in one process without network (scale mode): %d virtual hospitals sharing one read-only copy of the data, %d training at once, aggregation with package aggregation (the coordinator's code), plaintext", cfg.Clients, workers)
	sum.Hospital = "simulations in-process hospital (model + aggregation, no transport)"

	// One shared, partition-ordered copy of the training data.
	var order []int
	offsets := make([]int, len(parts)+1)
	for i, p := range parts {
		order = append(order, p...)
		offsets[i+1] = offsets[i] + len(p)
	}
	shared := train.Subset(order)
	size := shared.Size()
	shard := func(i int) ([]float32, []float32) {
		return shared.X[offsets[i]*size : offsets[i+1]*size], shared.Y[offsets[i]:offsets[i+1]]
	}

	global, err := model.Build(spec, cfg.Seed)
	if err != nil {
		return err
	}
	sum.Params = global.NumParams()
	opt, err := aggregation.NewServerOptimizer(aggregation.ServerConfig{Name: strat.Optimizer, LR: cfg.ServerLR}, global.NumParams())
	if err != nil {
		return err
	}
	replicas := make(chan *model.Sequential, workers)
	for range workers {
		replicas <- global.Clone()
	}
	attack, _ := ParseAttack(cfg.Attack)
	loss := lossFor(spec)
	sum.SetupSeconds = time.Since(t0).Seconds()
	hooks.step("in-process federation: %d hospitals, %d parameters, %d workers", cfg.Clients, sum.Params, workers)

	var acct aggregation.Accountant
	nByz := 0
	for _, b := range byz {
		if b {
			nByz++
		}
	}
	for r := 1; r <= cfg.Rounds; r++ {
		start := time.Now()
		m := RoundMetrics{Round: r}
		who, dropped := selection(cfg, r)
		m.Selected, m.Contributors = len(who)+len(dropped), len(who)
		for _, i := range dropped {
			m.Dropped = append(m.Dropped, hospitalID(i))
		}
		w0 := global.Flat(nil)
		updates := make([]aggregation.Update, len(who))
		trainSecs := make([]float64, len(who))
		losses := make([]float64, len(who))
		clips := make([]float64, len(who))
		var wg sync.WaitGroup
		errs := make(chan error, len(who))
		sem := make(chan struct{}, workers)
		for k, i := range who {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				rep := <-replicas
				defer func() { replicas <- rep }()
				if err := rep.SetFlat(w0); err != nil {
					errs <- err
					return
				}
				tc := model.TrainConfig{
					Epochs: cfg.LocalEpochs, BatchSize: cfg.BatchSize, Loss: loss,
					Optimizer: model.OptimizerConfig{LearningRate: cfg.LR},
					Seed:      cfg.Seed*0x9e3779b97f4a7c15 ^ uint64(i)<<20 ^ uint64(r),
				}
				if strat.Proximal {
					tc.ProximalMu = cfg.ProximalMu
				}
				tr, err := model.NewTrainer(rep, tc)
				if err != nil {
					errs <- err
					return
				}
				x, y := shard(i)
				ts := time.Now()
				for range tc.Epochs {
					st, err := tr.Epoch(ctx, x, y, nil)
					if err != nil {
						errs <- err
						return
					}
					losses[k] = st.Loss
				}
				trainSecs[k] = time.Since(ts).Seconds()
				d := rep.Flat(nil)
				for j := range d {
					d[j] -= w0[j]
				}
				hr := rand.New(rand.NewChaCha8(derive(cfg.Seed^uint64(r)<<32, "attack", uint64(i))))
				if byz[i] {
					applyAttack(d, attack, hr)
				}
				clips[k] = 1
				samples := len(y)
				if cfg.DPNoiseMultiplier > 0 {
					dp := aggregation.DPConfig{NoiseMultiplier: cfg.DPNoiseMultiplier, Clip: cfg.DPClip, Delta: cfg.DPDelta}
					nr := rand.New(rand.NewChaCha8(derive(cfg.Seed^uint64(r)<<32, "dp", uint64(i))))
					if clips[k], err = aggregation.ClipAndNoise(d, dp, cfg.MinClients, nr); err != nil {
						errs <- err
						return
					}
					samples = 1
				} else if cfg.ClipNorm > 0 {
					if clips[k], err = aggregation.ClipNorm(d, cfg.ClipNorm); err != nil {
						errs <- err
						return
					}
				}
				updates[k] = aggregation.Update{Client: hospitalID(i), Delta: d, Samples: samples}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		ta := time.Now()
		var mean []float32
		switch {
		case cfg.DPNoiseMultiplier > 0:
			mean, err = aggregation.DPMean(updates, len(updates))
		case strat.Aggregator == aggregation.AggregatorMedian:
			mean, err = aggregation.Median(updates)
		case strat.Aggregator == aggregation.AggregatorTrimmedMean:
			beta := max(0.1, float64(nByz)/float64(len(updates))+1e-9)
			mean, err = aggregation.TrimmedMean(updates, min(beta, 0.49))
		case strat.Aggregator == aggregation.AggregatorKrum:
			f := nByz
			for f > 0 && len(updates) <= 2*f+2 {
				f--
			}
			mean, _, err = aggregation.Krum(updates, f, max(1, len(updates)-f))
		default:
			mean, err = aggregation.WeightedMean(updates)
		}
		if err != nil {
			return fmt.Errorf("round %d: aggregate: %w", r, err)
		}
		if err := opt.Apply(w0, mean); err != nil {
			return fmt.Errorf("round %d: server step: %w", r, err)
		}
		if err := global.SetFlat(w0); err != nil {
			return err
		}
		m.Aggregate = time.Since(ta).Seconds()
		for k := range who {
			m.Train += trainSecs[k]
			m.TrainLoss += losses[k] / float64(len(who))
			m.ClipMean += clips[k] / float64(len(who))
			m.UpBytes += int64(4 * len(updates[k].Delta))
			m.DownBytes += int64(4 * len(w0))
		}
		if m.Loss, m.Accuracy, err = global.Evaluate(test.X, test.Y, test.Len(), loss); err != nil {
			return err
		}
		if cfg.DPNoiseMultiplier > 0 {
			if err := acct.Step(1, cfg.coordinatorNoise()); err != nil {
				return err
			}
			m.Epsilon, _ = acct.Epsilon(cfg.DPDelta)
		}
		m.Seconds = time.Since(start).Seconds()
		sum.Rounds = append(sum.Rounds, m)
		if hooks.Round != nil {
			hooks.Round(m)
		}
	}
	sum.final = global
	if cfg.Predictions > 0 {
		inf, err := predictThroughAPI(ctx, global, uint64(cfg.Rounds), test, cfg.Predictions)
		if err != nil {
			return fmt.Errorf("inference: %w", err)
		}
		sum.Inference = inf
	}
	return nil
}
