"""Run tasks in worker processes, noticing a worker that dies (killed, out of memory, crashed).

multiprocessing.Pool never notices a dead worker and waits forever for its task; here each worker
has its own pipe and the parent also waits on the worker's exit, so it knows which task was lost."""

import multiprocessing
import pickle
import signal
import traceback
from multiprocessing.connection import wait


class WorkerDiedError(RuntimeError):
    """A worker process ended while running a task; LOST names the tasks that did not finish."""

    def __init__(self, message, lost):
        super().__init__(message)
        self.lost = lost


class TaskError(RuntimeError):
    """A task raised an exception that could not be sent back as it was."""


def _describe_exit(code):
    """'killed by SIGKILL' or 'exit status 3'."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _work(fn, conn):
    """Worker loop: receive a task, send ('done', result) or ('error', exception); None ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        for task in iter(conn.recv, None):
            try:
                reply = ("done", fn(task))
            except Exception as e:  # sent back, raised in the parent
                reply = ("error", _sendable(e))
            conn.send(reply)
    except (OSError, EOFError):  # the parent is gone (killed): nobody wants the result
        return


def _sendable(error):
    """ERROR itself if it pickles, else a TaskError holding its traceback's text."""
    try:
        pickle.dumps(error)
        return error
    except Exception:
        return TaskError("".join(traceback.format_exception(type(error), error, error.__traceback__)))


def _start(context, fn, jobs):
    """Start JOBS workers with SIGINT ignored from their first instruction on."""
    workers = []
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited across spawn's exec
    try:
        for _ in range(jobs):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_work, args=(fn, child_end), daemon=True)
            process.start()
            child_end.close()
            workers.append((process, parent_end))
    finally:
        signal.signal(signal.SIGINT, previous)
    return workers


def _stop(workers):
    """Terminate and reap every worker still running."""
    for process, conn in workers:
        if process.is_alive():
            process.terminate()
    for process, conn in workers:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        conn.close()


def _died(process, task, running, name):
    """The WorkerDiedError for PROCESS, which ended without finishing TASK."""
    process.join(5)
    lost = [name(t) for _, t in running.values()]
    others = [n for n in lost if n != name(task)]
    return WorkerDiedError(
        f"a worker process died ({_describe_exit(process.exitcode)}) running {name(task)}"
        + (f"; also stopped: {', '.join(others)}" if others else ""), lost)


def run_in_processes(fn, tasks, jobs, name=str):
    """Yield FN(task) for each of TASKS as it finishes, in JOBS spawned processes.

    A task's exception is raised here; a worker that dies raises WorkerDiedError naming (with
    NAME(task)) the task it ran. Every worker is stopped when this generator ends, however it ends."""
    # spawn, not fork: forking a process whose torch thread pools already ran can deadlock
    context = multiprocessing.get_context("spawn")
    pending = list(reversed(tasks))
    workers = _start(context, fn, min(jobs, len(tasks)))
    running = {}  # connection -> (process, task)

    def give_next(conn, process):
        """Send the worker its next task, or None to end it."""
        if pending:
            running[conn] = (process, pending.pop())
        conn.send(running[conn][1] if conn in running else None)

    try:
        for process, conn in workers:
            give_next(conn, process)
        while running:
            sentinels = {process.sentinel: conn for conn, (process, _) in running.items()}
            for ready in wait([*running, *sentinels]):
                conn = sentinels.get(ready, ready)
                if conn not in running:
                    continue
                process, task = running[conn]
                try:
                    if not conn.poll():  # its sentinel: the worker exited
                        raise EOFError
                    kind, value = conn.recv()
                except (EOFError, OSError):  # no reply, and there never will be: it died
                    raise _died(process, task, running, name) from None
                if kind == "error":
                    raise value
                del running[conn]
                yield value
                try:
                    give_next(conn, process)
                except OSError:  # it died meanwhile: a task lost if it was given one, else nothing
                    if conn in running:
                        raise _died(process, running[conn][1], running, name) from None
    finally:
        _stop(workers)
