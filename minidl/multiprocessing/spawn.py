"""torch.multiprocessing.spawn: run ``fn(i, *args)`` in ``nprocs`` processes and join them, an error in any one
raised in the parent with the child's traceback."""
import multiprocessing
import multiprocessing.connection
import signal
import traceback


class ProcessException(Exception):
    """A spawned process failed (torch's base class): ``error_index`` is its index, ``pid`` its process id."""

    def __init__(self, msg, error_index, pid):
        super().__init__(msg)
        self.msg, self.error_index, self.pid = msg, error_index, pid

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid)


class ProcessRaisedException(ProcessException):
    """The spawned process ``error_index`` raised; the message holds its traceback."""


class ProcessExitedException(ProcessException):
    """The spawned process ``error_index`` exited with a non-zero code or was killed by a signal."""

    def __init__(self, msg, error_index, error_pid, exit_code, signal_name=None):
        super().__init__(msg, error_index, error_pid)
        self.exit_code, self.signal_name = exit_code, signal_name

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid, self.exit_code, self.signal_name)


def _wrap(fn, i, args, error_queue):
    try:
        fn(i, *args)
    except KeyboardInterrupt:
        pass  # the parent is told by the exit code
    except Exception:
        error_queue.put(traceback.format_exc())
        raise SystemExit(1) from None


class ProcessContext:
    """The processes of one :func:`start_processes` call; ``join()`` waits for them."""

    def __init__(self, processes, error_queues):
        self.processes, self.error_queues = processes, error_queues
        self.sentinels = {p.sentinel: i for i, p in enumerate(processes)}

    def pids(self):
        return [p.pid for p in self.processes]

    def join(self, timeout=None):
        """Wait for the processes (``timeout`` seconds at most); True once all have exited cleanly, False while some
        still run. The first failure terminates the others and raises ProcessRaisedException (with the child's
        traceback) or ProcessExitedException."""
        if not self.sentinels:
            return True
        ready = multiprocessing.connection.wait(list(self.sentinels), timeout=timeout)
        failed = None
        for sentinel in ready:
            i = self.sentinels.pop(sentinel)
            self.processes[i].join()
            if self.processes[i].exitcode != 0 and failed is None:
                failed = i
        if failed is None:
            return not self.sentinels
        for p in self.processes:
            if p.is_alive():
                p.terminate()
            p.join()
        code, pid = self.processes[failed].exitcode, self.processes[failed].pid
        if not self.error_queues[failed].empty():
            msg = f"\n\n-- Process {failed} terminated with the following error:\n" + self.error_queues[failed].get()
            raise ProcessRaisedException(msg, failed, pid)
        if code < 0:
            name = signal.Signals(-code).name
            raise ProcessExitedException(f"process {failed} terminated with signal {name}", failed, pid, code, name)
        raise ProcessExitedException(f"process {failed} terminated with exit code {code}", failed, pid, code)


class SpawnContext(ProcessContext):
    """torch's name for the context :func:`spawn` returns."""


def start_processes(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Start ``nprocs`` processes of ``start_method`` running ``fn(i, *args)`` (i = 0 .. nprocs-1); with ``join``,
    wait for them all (see :meth:`ProcessContext.join`), else return the ProcessContext."""
    ctx = multiprocessing.get_context(start_method)
    processes, error_queues = [], []
    for i in range(nprocs):
        error_queue = ctx.SimpleQueue()
        p = ctx.Process(target=_wrap, args=(fn, i, args, error_queue), daemon=daemon)
        p.start()
        processes.append(p)
        error_queues.append(error_queue)
    context = SpawnContext(processes, error_queues) if start_method == "spawn" else ProcessContext(processes,
                                                                                                   error_queues)
    if not join:
        return context
    while not context.join():
        pass
    return None


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """torch.multiprocessing.spawn: :func:`start_processes` (``start_method`` 'spawn' by default)."""
    return start_processes(fn, args, nprocs, join, daemon, start_method)
