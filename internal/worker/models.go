package worker

import (
	"errors"
	"fmt"
	"sync"

	"github.com/segbridge/segbridge/internal/model"
)

// Why a worker keeps every model version it has loaded: SIGHUP re-reads the
// manifests so that a new model version deploys without a restart, but jobs
// queued for the old version are still in the queue (and on other bridges,
// still being queued until they reload too). Those run with the version
// they name, as long as its manifest was loaded once by this process; a job
// for a version the worker never had is retried later, when a worker that
// has it (or this one after a reload) may take it.

// models is a worker's models: the current set, by name, and every version
// loaded since the worker started.
type models struct {
	mu        sync.RWMutex
	current   map[string]*model.Model
	byVersion map[[2]string]*model.Model
}

func newModels(ms []*model.Model) (*models, error) {
	s := &models{byVersion: map[[2]string]*model.Model{}}
	if err := s.set(ms); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *models) set(ms []*model.Model) error {
	if len(ms) == 0 {
		return errors.New("worker: no models")
	}
	cur := map[string]*model.Model{}
	for _, m := range ms {
		if _, dup := cur[m.Name]; dup {
			return fmt.Errorf("worker: model %q is given twice", m.Name)
		}
		cur[m.Name] = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = cur
	for _, m := range ms {
		s.byVersion[[2]string{m.Name, m.Version}] = m
	}
	return nil
}

// lookup finds the model a job names.
func (s *models) lookup(name, version string) (*model.Model, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if m, ok := s.byVersion[[2]string{name, version}]; ok {
		return m, nil
	}
	if m, ok := s.current[name]; ok {
		return nil, fmt.Errorf("job wants %s version %s but this worker has version %s (it runs when a worker with that version takes it)", name, version, m.Version)
	}
	return nil, fmt.Errorf("model %q is not installed on this worker (the job runs when a worker that has it takes it)", name)
}

// SetModels replaces the worker's models, as SIGHUP does after re-reading the
// manifests: jobs taken from now on run the new ones; running jobs finish
// with the model they started with, and queued jobs for a version loaded
// before still run with it.
func (w *Worker) SetModels(ms []*model.Model) error {
	if err := w.models.set(ms); err != nil {
		return err
	}
	w.logger.Info().Int("models", len(ms)).Msg("models reloaded")
	return nil
}
