package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/bridge"
	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/codec"
	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/intake"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/notify"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/pipeline"
	"github.com/segbridge/segbridge/internal/queue"
	"github.com/segbridge/segbridge/internal/reconcile"
	"github.com/segbridge/segbridge/internal/resultview"
	"github.com/segbridge/segbridge/internal/volume"
	"github.com/segbridge/segbridge/internal/worker"
)

// stopTimeout bounds a graceful stop: a running job is handed back and the
// process is gone well within the 10 s a service manager usually waits.
const stopTimeout = 8 * time.Second

// serve runs the bridge, the embedded (or external) queue and in-process workers.
func serve(ctx context.Context, logger zerolog.Logger, cfg *config.Config) error {
	if err := cfg.ValidateServe(); err != nil {
		return err
	}
	// From the start: a SIGHUP while starting waits instead of ending the
	// process.
	hup, stopHUP := reloadSignals()
	defer stopHUP()
	models, err := loadModels(cfg)
	if err != nil {
		return err
	}
	oc, err := newOrthanc(logger, cfg)
	if err != nil {
		return err
	}
	q, err := queue.Open(ctx, logger, queueConfig(cfg))
	if err != nil {
		return err
	}
	defer q.Close()
	if u := q.ClientURL(); u != "" {
		logger.Info().Str("url", u).Msg("queue open to remote workers")
	}

	// JPEG 2000 decoding in child processes, for the workers and for the
	// status page's previews; the children start when first needed.
	pool, err := codec.NewPool(logger, codec.Config{})
	if err != nil {
		return err
	}
	defer pool.Close()

	metrics := bridge.NewMetrics()
	q.OnWrite(metrics.StatusWritten)
	in, err := intake.NewReloadable(logger, q, oc, metrics, intake.Config{Models: models, DefaultModel: cfg.Model, Modalities: cfg.Modalities})
	if err != nil {
		return err
	}
	// The status page's previews read series as a worker does.
	results, err := resultview.New(oc, resultview.Config{Load: func(ctx context.Context, id string) (*volume.Volume, error) {
		return worker.LoadSeries(ctx, oc, id, limits(cfg), pool, cfg.DownloadConcurrency)
	}})
	if err != nil {
		return err
	}
	// Bridges that share an external NATS elect one leader to reconcile,
	// sweep and report the cluster-wide gauges; with the embedded server
	// this bridge is the only one.
	var leader *queue.Leader
	leading := func() (uint64, bool) { return 1, true }
	if cfg.NATSURL != "" {
		if leader, err = q.NewLeader(logger, queue.LeaderConfig{}); err != nil {
			return err
		}
		leading = leader.Leading
		metrics.Leader(leader.IsLeader)
	}
	srv, err := bridge.New(logger, q, in, oc, bridge.Config{
		Listen:           cfg.Listen,
		WebhookToken:     cfg.WebhookToken,
		APIToken:         cfg.APIToken,
		Metrics:          metrics,
		OrthancPublicURL: cfg.OrthancPublicURL,
		DjangoWait:       djangoWait(cfg.DjangoWait),
		Results:          results,
	})
	if err != nil {
		return err
	}
	var nt *notify.Notifier
	if cfg.NotifyURL != "" {
		nt, err = notify.New(logger, q, notify.Config{URL: cfg.NotifyURL, Secret: cfg.NotifySecret, Body: srv.JobJSON})
		if err != nil {
			return err
		}
	}
	var rec *reconcile.Reconciler
	if cfg.ReconcileInterval > 0 {
		admit := func(ctx context.Context, seriesID string, tags map[string]string) (reconcile.Outcome, error) {
			queued, skipped, err := srv.QueueStable(ctx, seriesID, tags)
			return reconcile.Outcome{Queued: queued, Reason: skipped}, err
		}
		rec, err = reconcile.New(logger, oc, q, admit, reconcile.Config{
			Interval:  cfg.ReconcileInterval,
			StartFrom: int64(cfg.ReconcileFrom),
			Leader:    leadershipFunc(leading),
		})
		if err != nil {
			return err
		}
		if err := metrics.Reconciler(rec.Stats); err != nil {
			return err
		}
	}
	if cfg.APIToken == "" {
		logger.Warn().Msg("SEGBRIDGE_API_TOKEN is not set: the /v1 API is open to anyone on this machine (loopback only)")
	}
	sup := q.NewSupervisor(logger, queue.SupervisorConfig{Leading: func() bool { _, ok := leading(); return ok }})

	var w *worker.Worker
	if cfg.Workers > 0 {
		if err := cfg.ValidateWorker(); err != nil {
			return err
		}
		rt, err := inference.NewRuntime(logger, runtimeConfig(cfg))
		if err != nil {
			return err
		}
		defer rt.Close()
		w, err = newWorker(logger, cfg, q, oc, rt, pool, models, q.AckWait())
		if err != nil {
			return err
		}
	}

	// Start in data-flow order; stop in reverse.
	if err := q.ServeWorkers(ctx, segVerifier{oc}); err != nil {
		return err
	}
	if leader != nil {
		if err := leader.Start(ctx); err != nil {
			return err
		}
	}
	if err := sup.Start(ctx); err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if nt != nil {
		if err := nt.Start(ctx); err != nil {
			return err
		}
	}
	if w != nil {
		if err := w.Start(ctx); err != nil {
			return err
		}
	}
	if rec != nil {
		if err := rec.Start(ctx); err != nil {
			return err
		}
	}
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.Name + " " + m.Version
	}
	logger.Info().Str("listen", srv.Addr()).Str("orthanc", oc.URL()).Int("workers", cfg.Workers).Strs("models", names).Msg("segbridge serving")
	reloaders := []modelReloader{in}
	if w != nil {
		reloaders = []modelReloader{reloadFunc(w.SetModels), in}
	}
	untilDone(ctx, hup, logger, cfg, reloaders...)
	logger.Info().Msg("shutting down")

	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	var errs []error
	if rec != nil {
		errs = append(errs, rec.Stop(stopCtx))
	}
	if nt != nil {
		errs = append(errs, nt.Stop(stopCtx))
	}
	errs = append(errs, srv.Stop(stopCtx))
	if w != nil {
		errs = append(errs, w.Stop(stopCtx))
	}
	errs = append(errs, sup.Stop(stopCtx))
	if leader != nil {
		// Last, so that another bridge takes over at once.
		errs = append(errs, leader.Stop(stopCtx))
	}
	return errors.Join(errs...)
}

// leadershipFunc adapts Leader.Leading to reconcile.Leadership.
type leadershipFunc func() (uint64, bool)

func (f leadershipFunc) Leading() (uint64, bool) { return f() }

// segVerifier checks a remote worker's result in Orthanc before its job is
// recorded done.
type segVerifier struct{ oc *orthanc.Client }

func (v segVerifier) VerifyResult(ctx context.Context, job queue.Job, res queue.Result) error {
	if err := v.oc.VerifySEG(ctx, res.SEGInstanceID, res.SEGSeriesID, job.SeriesID, job.Model, job.ModelVersion); err != nil {
		return err
	}
	for _, o := range []struct{ id, modality string }{{res.SRSeriesID, "SR"}, {res.PreviewSeriesID, "OT"}} {
		if o.id == "" {
			continue
		}
		if err := v.oc.VerifyBeside(ctx, o.id, job.SeriesID, o.modality); err != nil {
			return err
		}
	}
	return nil
}

func newOrthanc(logger zerolog.Logger, cfg *config.Config) (*orthanc.Client, error) {
	return orthanc.NewClient(logger, orthanc.Config{
		URL:             cfg.OrthancURL,
		User:            cfg.OrthancUser,
		Password:        cfg.OrthancPassword,
		MaxConnsPerHost: max(16, cfg.DownloadConcurrency*cfg.Workers),
		MaxBodyBytes:    limits(cfg).MaxBytes,
	})
}

func queueConfig(cfg *config.Config) queue.Config {
	return queue.Config{
		URL:            cfg.NATSURL,
		Token:          cfg.NATSToken,
		CredsFile:      cfg.NATSCreds,
		NKeySeedFile:   cfg.NATSNKeySeed,
		TLSCAFile:      cfg.NATSTLSCA,
		TLSCertFile:    cfg.NATSTLSCert,
		TLSKeyFile:     cfg.NATSTLSKey,
		AllowPlaintext: cfg.NATSAllowPlaintext,
		DataDir:        cfg.DataDir,
		Listen:         cfg.NATSListen,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxAttempts,
		Replicas:       cfg.NATSReplicas,
	}
}

func runtimeConfig(cfg *config.Config) inference.RuntimeConfig {
	return inference.RuntimeConfig{
		LibraryPath:    cfg.ORTLibrary,
		Device:         cfg.Device,
		IntraOpThreads: cfg.IntraOpThreads,
	}
}

func limits(cfg *config.Config) volume.Limits {
	return volume.Limits{MaxVoxels: cfg.MaxVoxels, MaxBytes: cfg.MaxBytes}.WithDefaults()
}

// newWorker builds the workers of serve and of `segbridge worker`.
func newWorker(logger zerolog.Logger, cfg *config.Config, jobs worker.JobSource, oc *orthanc.Client, rt *inference.Runtime,
	decoder volume.FrameDecoder, models []*model.Model, ackWait time.Duration) (*worker.Worker, error) {
	outputs, err := pipeline.ParseOutputs(cfg.Outputs)
	if err != nil {
		return nil, fmt.Errorf("SEGBRIDGE_OUTPUTS: %w", err)
	}
	pl, err := pipeline.New(rt, pipeline.Config{Limits: limits(cfg), SoftwareVersions: "segbridge " + Version, Outputs: outputs})
	if err != nil {
		return nil, err
	}
	return worker.New(logger, jobs, oc, pl, models, worker.Config{
		Concurrency:         cfg.Workers,
		DownloadConcurrency: cfg.DownloadConcurrency,
		Heartbeat:           ackWait / 3,
		RetryDelay:          cfg.RetryDelay,
		Decoder:             decoder,
	})
}

// djangoWait maps the configuration's 0 ("do not wait") to the bridge's.
func djangoWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// loadModels reads the manifests named by the configuration and applies the
// THRESHOLD override to sigmoid models.
func loadModels(cfg *config.Config) ([]*model.Model, error) {
	var models []*model.Model
	if dir := cfg.ModelsFolder(); dir != "" {
		ms, err := model.LoadDir(dir, model.WithFileDirs(cfg.ModelFiles...))
		if err != nil {
			return nil, fmt.Errorf("load models: %w", err)
		}
		models = append(models, ms...)
	}
	if cfg.ModelPath != "" {
		m, err := model.Load(cfg.ModelPath, model.WithFileDirs(cfg.ModelFiles...))
		if err != nil {
			return nil, fmt.Errorf("load model: %w", err)
		}
		for _, x := range models {
			if x.Name == m.Name {
				return nil, fmt.Errorf("MODEL_PATH %s: model %q is also in SEGBRIDGE_MODELS_DIR", cfg.ModelPath, m.Name)
			}
		}
		models = append(models, m)
	}
	if len(models) == 0 {
		return nil, errors.New(cfg.NoModelsHint())
	}
	if cfg.Threshold > 0 {
		for _, m := range models {
			if m.Output.Activation == model.ActivationSigmoid {
				t := cfg.Threshold
				m.Output.Threshold = &t
			}
		}
	}
	return models, nil
}
