package main

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/config"
	"github.com/segbridge/segbridge/internal/model"
)

// reloadSignals delivers SIGHUP, which makes serve and worker re-read the
// model manifests (systemd's ExecReload sends it). Without it Go's default
// would end the process. stop restores the default.
func reloadSignals() (hup <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// untilDone waits for ctx to end, re-reading the model manifests into parts
// at each SIGHUP on hup.
func untilDone(ctx context.Context, hup <-chan os.Signal, logger zerolog.Logger, cfg *config.Config, parts ...modelReloader) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reloadModels(logger, cfg, parts...)
		}
	}
}

// modelReloader is a part that holds models and takes a new set.
type modelReloader interface {
	Reload(models []*model.Model) error
}

// reloadFunc adapts a SetModels-style method.
type reloadFunc func([]*model.Model) error

func (f reloadFunc) Reload(models []*model.Model) error { return f(models) }

// reloadModels re-reads the manifests the configuration names (the
// environment itself is not re-read) and hands them to each part in turn:
// workers first, so that they know a new version before any job for it is
// queued (they keep the versions they had for jobs queued before). A set
// that cannot be read or used leaves the models in use as they were.
func reloadModels(logger zerolog.Logger, cfg *config.Config, parts ...modelReloader) {
	models, err := loadModels(cfg)
	if err != nil {
		logger.Error().Err(err).Msg("SIGHUP: cannot re-read the model manifests; the models in use stay")
		return
	}
	for _, p := range parts {
		if err := p.Reload(models); err != nil {
			logger.Error().Err(err).Msg("SIGHUP: the re-read models were refused; the models in use stay")
			return
		}
	}
	var names []string
	for _, m := range models {
		names = append(names, m.Name+" "+m.Version)
	}
	logger.Info().Str("models", strings.Join(names, ", ")).Msg("SIGHUP: model manifests re-read")
}
