// Package inference serves published model versions over the Open Inference Protocol v2
// (KServe / Triton / MLServer), on REST and gRPC, with request batching, input validation,
// explanations, authentication, per-caller metrics and rate limits: MedFed's model as a
// service.
//
// Reach first for a Registry, which holds models by name (the federation name) and version
// (the round that produced it), and a Server on top of it:
//
//	reg, _ := inference.NewRegistry(inference.DefaultConfig(), logger)
//	defer reg.Close(ctx)
//	reg.Publish("mnist", 12, m, inference.ModelMeta{})   // when round 12's model commits
//	srv := inference.NewServer(reg, tokens, logger)      // tokens from LoadTokenFile, or nil
//	mux.Handle("/v2/", srv.Handler())                    // REST
//	mux.Handle("GET /metrics", srv.Handler())
//	srv.RegisterGRPC(grpcServer)                         // inference.GRPCInferenceService
//
// The package knows nothing about Raft: the coordinator calls Publish as each round's model
// commits and, on start-up, for the versions its replicated state holds, so every node,
// followers included, serves the same versions.
//
// # Versions
//
// The newest published version of a name is its default; Publish switches the default with
// one atomic store, and a request keeps the version it looked up to the end, so a new round
// never fails a request in flight. Each name keeps Config.Retain newest versions plus the
// ones pinned with Pin; the others are retired (their batchers stop once the requests they
// hold are answered).
//
// # Batching
//
// Every version has a batcher: requests from concurrent callers are merged into one Predict
// call of up to Config.MaxBatch samples. After the first request of a batch arrives the
// batcher waits up to Config.MaxDelay for more, but only while other callers are waiting, so
// a lone caller pays no delay; while all Config.Workers are busy the batch keeps growing.
//
// # Requests
//
// The model has one input, named "input" in the metadata (a request may name it anything),
// of shape [-1, sample shape...]; a request may also send [N, values per sample]. Accepted
// datatypes: FP32; FP64 and the integer types, converted by value; UINT8, read as 8-bit
// pixel intensities and divided by 255, like the IDX loader in package dataset, so a client
// can send raw image bytes. REST "data" may be flat or nested (row-major). NaN and Inf are
// refused, also as the strings "NaN" and "Infinity" some encoders write. Outputs are
// "probabilities" (FP32 [N, classes]) and "predicted_class" (INT64 [N]); a request's
// "outputs" selects among them. Errors are the protocol's: REST {"error": "..."} with 400
// (invalid or over a size limit), 401, 404 (unknown model or version), 429 or 503; gRPC
// InvalidArgument, Unauthenticated, NotFound, ResourceExhausted or Unavailable. Every
// message says what was expected and what arrived.
//
// # Explanations
//
// POST /v2/models/{name}/explain takes an inference body and answers the "attributions"
// output, the size of the input, plus per sample the explained class, F(x), F(baseline) and
// the attributions' sum, and for a model with ModelMeta.FeatureNames the attributions by
// feature name. The default is integrated gradients from an all-zero baseline with
// Config.IGSteps (32) midpoint steps, whose attributions sum to about F(x) - F(0); request
// parameters {"method": "gradient_x_input"} (one backward pass), "steps" and "target" (the
// class per sample; default the predicted one) change that. Zero is the baseline for all
// models: black for images, and the mean patient for standardised tables.
//
// # Access
//
// Every endpoint except the REST health checks (/v2/health/live, /v2/health/ready) and the
// gRPC ServerLive and ServerReady needs an authenticated caller: a client certificate signed
// by the consortium CA, named "<role>/<id>" (see crypto/pki), or a bearer token the operator
// issued, named "token/<name>". Token files hold only SHA-256 hashes (HashToken) and tokens
// are compared in constant time. To accept token callers on a mutual-TLS listener, wrap its
// configuration with TokenTLSConfig. Requests are counted per caller, endpoint and outcome
// at /metrics (Prometheus text, authenticated too), and each caller has a token bucket of
// Config.RateLimit requests per second with Config.RateBurst burst.
package inference
