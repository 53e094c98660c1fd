// Package localtrain runs non-federated training of one model on one data set: the seed
// example behind `medfed train`, and the baseline every federated run is compared with.
//
// Run loads the data set, builds the architecture from model.Architecture, trains with
// model.Trainer, evaluates on the held-out test split and optionally saves the model as
// safetensors. It reports progress through callbacks and leaves rendering to the caller.
package localtrain
