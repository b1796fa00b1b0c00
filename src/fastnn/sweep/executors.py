"""Where a sweep's trials run besides the client: worker processes on this
machine (:func:`run_processes`) or a Dask cluster (:func:`run_dask`). Both
send the data once and call ``finished(task, record, files)`` in the client
as each trial ends."""
import contextlib
import multiprocessing
import os
import signal

from .grid import data_key
from .trial import failure, run_trial


# worker processes (jobs > 1): the data arrives once, when a worker starts; then
# the client sends it one trial at a time over its own pipe
_WORKER_DATA = None


def _init_worker(data):
    global _WORKER_DATA
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle
    _WORKER_DATA = data


def process_task(config, params, label):
    return run_trial(config, params, label, _WORKER_DATA[data_key(config)])


def _worker_main(conn, data, task):
    """A worker process: runs ``task(config, params, label)`` for each trial that
    arrives on ``conn`` and sends back its ``(record, files)``; stops on None or
    when the client is gone."""
    _init_worker(data)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = task(*job)
        except Exception as exc:  # run_trial records its failures; a safety net
            result = failure(*job, exc)
        try:
            conn.send(result)
        except Exception as exc:  # e.g. a result that cannot be pickled
            conn.send(failure(*job, exc))


class _Worker:
    """A worker process of :func:`run_processes`, its pipe, and the trial it runs."""

    def __init__(self, ctx, data, task):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, data, task),
                                   name="fastnn-sweep-worker", daemon=True)
        self.process.start()
        child.close()
        self.task = None

    def send(self, task):
        self.task = task
        try:
            self.conn.send(task)
        except OSError:  # the process is dead: its sentinel says so, see result()
            pass

    def result(self):
        """The trial's ``(record, files)``, or None if the process died first."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def death(self):
        """Why the process died, for the record of the trial it was running."""
        self.process.join()
        code = self.process.exitcode
        try:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        except (ValueError, TypeError):
            how = f"exit code {code}"
        return (f"worker process died ({how}) while running this trial: killed from outside "
                f"(e.g. by the out-of-memory killer) or crashed; the other trials went on, "
                f"and a rerun retries it")

    def stop(self, wait):
        """Ask the process to end (``wait``) or terminate it; then reap it."""
        if wait and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join()
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.conn.close()


def dask_task(config, params, label, data):
    return run_trial(config, params, label, data[data_key(config)])


def run_processes(jobs, todo, data, finished):
    """``jobs`` worker processes, each sent the data once, when it starts, then one
    trial at a time over its own pipe, so the client knows which trial each runs.
    A worker that dies (SIGKILL, the out-of-memory killer, a crash) fails the trial
    it was running, with the reason; a new worker takes its place for the others."""
    from multiprocessing.connection import wait
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":  # the workers fork from a server that has imported fastnn once
        ctx.set_forkserver_preload(["fastnn.sweep", "fastnn.experiment", "fastnn.plots"])
    task_fn = process_task  # looked up per sweep (a test may replace it)
    pending = list(reversed(todo))
    idle, busy = [], []
    try:
        idle = [_Worker(ctx, data, task_fn) for _ in range(min(jobs, len(todo)))]
        while pending or busy:
            while pending and idle:
                worker = idle.pop()
                worker.send(pending.pop())
                busy.append(worker)
            # returns on a result or a death; the timeout keeps Ctrl-C responsive
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                             timeout=1.0))
            for worker in [w for w in busy if w.conn in ready or w.process.sentinel in ready]:
                busy.remove(worker)
                task, item = worker.task, worker.result()
                worker.task = None
                if item is None:
                    item = failure(*task, worker.death())
                if worker.process.is_alive():
                    idle.append(worker)
                else:  # died (with or after its trial): replaced while trials remain
                    worker.stop(wait=False)
                    if pending:
                        idle.append(_Worker(ctx, data, task_fn))
                finished(task, *item)
        for worker in idle:
            worker.stop(wait=True)
        idle = []
    finally:  # on Ctrl-C or an error: stop the workers
        for worker in idle + busy:
            worker.stop(wait=False)


def run_dask(scheduler, todo, data, finished):
    """The trials on a Dask cluster: the data scattered once (broadcast), one task per trial."""
    from distributed import Client, as_completed
    own = not isinstance(scheduler, Client)
    if own:
        address = getattr(scheduler, "scheduler_address", scheduler)
        client = Client(address)  # the default client while the sweep runs (as_completed)
    else:
        client = scheduler
    futures = {}
    try:
        [data_future] = client.scatter([data], broadcast=True)
        for config, params, label in todo:
            fut = client.submit(dask_task, config, params, label, data_future, pure=False,
                                key=f"fastnn-trial-{label}-{os.urandom(4).hex()}")
            futures[fut] = (config, params, label)
        for fut in as_completed(list(futures)):
            try:
                item = fut.result()
            except Exception as exc:  # a worker died, or the task could not run
                item = failure(*futures[fut], exc)
            finished(futures[fut], *item)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise
    finally:
        if own:
            client.close()
