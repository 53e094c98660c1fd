// Package model is MedFed's neural-network engine: the layers, losses and optimizers that train
// the shared CNN or RNN on a hospital's data, in pure Go and float32.
//
// Reach first for a Spec, the declarative, JSON-serialisable architecture that a coordinator
// and its hospitals agree on by value, and Build, which turns it into a Sequential model with
// Keras-style initialisation from a seed (Glorot uniform kernels, orthogonal recurrent
// kernels, zero biases except the LSTM forget gate's, which starts at 1; a recurrent
// layer's gates are drawn one by one, as in Flax, not as Keras's fused matrices):
//
//	spec, _ := model.Architecture("cnn", []int{28, 28, 1}, 10) // the seed example
//	m, _ := model.Build(spec, 1)
//	tr, _ := model.NewTrainer(m, model.DefaultTrainConfig())
//	stats, _ := tr.Epoch(ctx, x, y)        // one pass over x (row-major samples), y (class indices)
//	probs := m.Predict(xTest, nTest)        // safe for concurrent use
//
// Data layout is row-major float32 with the batch first: images are NHWC ([n, h, w, c]),
// sequences are [n, steps, features], tables are [n, features]. Targets are float32: the class
// index for classification losses, the value for mean squared error.
//
// Federated averaging works on the whole parameter set as one flat vector: Sequential.Flat and
// Sequential.SetFlat read and write it in the order of Sequential.Params, which is also the
// order of tensors in a safetensors file (see Save). Parameter names and layouts:
//
//	dense      layers.{i}.kernel [in, units]            layers.{i}.bias [units]
//	conv2d     layers.{i}.kernel [kh, kw, cin, filters] layers.{i}.bias [filters]
//	simple_rnn layers.{i}.kernel [in, units]            layers.{i}.recurrent_kernel [units, units]   layers.{i}.bias [units]
//	lstm       layers.{i}.kernel [in, 4*units]          layers.{i}.recurrent_kernel [units, 4*units] layers.{i}.bias [4*units]   (gates i, f, c, o)
//	gru        layers.{i}.kernel [in, 3*units]          layers.{i}.recurrent_kernel [units, 3*units] layers.{i}.bias [2, 3*units] (gates z, r, h; Keras reset_after)
//
// These are Keras's layouts, so weights move to Keras unchanged and to PyTorch with a
// transpose. Here i is the index of the layer in the built model, where a layer spec's fused
// activation counts as its own layer.
//
// A model is deterministic for a given seed and GOMAXPROCS: initialisation, dropout masks and
// shuffling draw from seeded PCG generators, and parallel kernels split work the same way on
// every run.
//
// Concurrency: Predict and Evaluate on one Sequential are safe for concurrent use; SetFlat,
// training and loading must not run concurrently with anything else on the same model.
// Shape mismatches between a model and the slices handed to it are programmer errors and
// panic; everything read from a file or the network (specs, safetensors) is checked and
// returns an error.
package model
