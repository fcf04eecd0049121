package queue

// Why a hook on this process's own writes: several bridges watch the same
// status bucket, so anything counted from the watch is counted once per
// bridge, and a sum over bridges multiplies it. Each status change is
// written by exactly one process, so what a bridge counts from its own
// writes (the jobs it saw finish, their stage times) adds up across bridges.

// OnWrite registers fn to be called with every status this process writes
// (enqueues and transitions, also those it makes for remote workers), after
// the write succeeded. fn must be quick; set it before the queue is used.
func (q *Queue) OnWrite(fn func(st *Status)) {
	q.onWrite.Store(&fn)
}

func (q *Queue) wrote(st *Status) {
	if fn := q.onWrite.Load(); fn != nil {
		(*fn)(st)
	}
}
