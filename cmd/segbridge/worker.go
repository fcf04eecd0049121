package main

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/codec"
	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/queue"
)

// workerCmd runs workers that take jobs from a remote queue: a GPU machine
// connects out to the bridge's NATS and to Orthanc, and needs no inbound port.
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
	models, err := loadModels(cfg)
	if err != nil {
		return err
	}
	oc, err := newOrthanc(logger, cfg)
	if err != nil {
		return err
	}
	qcfg := queueConfig(cfg)
	qcfg.Bind = true // workers may only take jobs: the bridge creates the queue
	qcfg.Name = "segbridge-worker"
	q, err := queue.Open(ctx, logger, qcfg)
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
	wcfg := workerConfig(cfg)
	wcfg.Decoder = pool
	w, err := inference.NewWorker(logger, q, oc, rt, models, wcfg)
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return w.Stop(stopCtx)
}
