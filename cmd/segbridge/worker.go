package main

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/codec"
	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/queue"
)

// workerCmd runs workers that take jobs from a remote queue: a GPU machine
// connects out to the bridge's NATS and to Orthanc, and needs no inbound port.
// It holds worker credentials only: every transition goes through the bridge.
func workerCmd(ctx context.Context, logger zerolog.Logger, cfg *config.Config) error {
	if cfg.NATSURL == "" {
		return errors.New("SEGBRIDGE_NATS_URL is required: the NATS server of the bridge (segbridge serve with SEGBRIDGE_NATS_LISTEN) or your cluster")
	}
	if err := cfg.ValidateWorker(); err != nil {
		return err
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
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
	qcfg := queueConfig(cfg)
	qcfg.Name = "segbridge-worker"
	q, err := queue.OpenRemote(ctx, logger, qcfg)
	if err != nil {
		return err
	}
	defer q.Close()
	rt, err := inference.NewRuntime(logger, runtimeConfig(cfg))
	if err != nil {
		return err
	}
	defer rt.Close()
	pool, err := codec.NewPool(logger, codec.Config{})
	if err != nil {
		return err
	}
	defer pool.Close()
	w, err := newWorker(logger, cfg, q, oc, rt, pool, models, cfg.AckWait)
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	untilDone(ctx, hup, logger, cfg, reloadFunc(w.SetModels))
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return w.Stop(stopCtx)
}
