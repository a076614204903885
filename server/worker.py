"""The one worker thread that owns the model: loading and every denoising job.

Heavy compute never runs on the event loop.  Jobs carry a supersede key
(document + job kind): a new job cancels the older one with the same key,
whether it is still queued or already running; a running job notices between
two denoising steps, so a cancelled request costs at most one more step.

The thread never dies: whatever a job raises is delivered to whoever awaits
it, a job that fails (not cancelled, not superseded) is reported with an
``error`` status, and the next job runs as usual.  ``stats`` counts what
happened to every job.
"""
from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from diffusion_core.infer.engine import EngineSettings, InfillEngine
from diffusion_core.model.loading import load_model
from diffusion_core.infer.sampler import Cancelled

log = logging.getLogger("diffill.worker")

StatusCallback = Callable[[str, str], None]  # (state, message): loading | ready | busy | error


class Superseded(Exception):
    """A newer job for the same document and kind replaced this one before it ran."""


class NoModel(RuntimeError):
    """No model is loaded (the load failed or has not finished); the message says why."""


class JobFailed(RuntimeError):
    """A job raised something that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``)."""


@dataclass
class Job:
    run: Callable                     # run(engine, on_step) -> result (a Plan's run, server/jobs.py)
    key: object = None
    progress: Callable[[int, int], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)
    step: int = 0
    total: int = 0

    def on_step(self, step: int, total: int, _ids) -> None:
        self.step, self.total = step, total
        if self.cancel.is_set():
            raise Cancelled()
        if self.progress is not None:
            self.progress(step, total)


class InferenceWorker:
    def __init__(self, on_status: StatusCallback):
        self.on_status = on_status
        self.engine: InfillEngine | None = None
        self.model_error: str | None = None
        self.ready = threading.Event()     # set once a load attempt has finished (ok or not)
        self._queue: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._cv = threading.Condition()
        self._stopped = False
        # submitted = superseded + cancelled + completed + failed (+ dropped by stop) once the queue is empty
        self.stats = {"submitted": 0, "started": 0, "completed": 0, "superseded": 0, "cancelled": 0, "failed": 0}
        self._thread = threading.Thread(target=self._loop, name="diffill-worker", daemon=True)
        self._thread.start()

    # -- public -----------------------------------------------------------------
    def load(self, model: str, threads: int = 0, precision: str = "auto") -> Job:
        """Load ``model`` on the worker; the previous engine serves until the new one is ready."""
        def run(_engine, _on_step):
            self.on_status("loading", f"loading model {model or 'default'}")
            try:
                loaded = load_model(model or None, threads=threads or None, precision=precision)
                engine = InfillEngine(loaded)
                # One short fill pays the one-time costs (kernels, first-call set-up) before a user's does; a
                # one-token fill pays them as well as a free one and costs 200 instead of 275 ms (measured
                # 2026-12-07: the first real fill 358-368 ms after either, 476-482 ms after none).
                engine.fill("Diffill is", " ready.", settings=EngineSettings(max_tokens=1))
                self.engine = engine
                self.model_error = None
            except Exception as exc:  # ModelLoadError, or anything a broken model dir raises
                self.model_error = str(exc)
                log.error("model load failed: %s", exc)
                self.on_status("error", str(exc))
                raise
            finally:
                self.ready.set()  # after the engine is in place: a waiter then finds it
            log.info("model ready: %s", loaded.path)
            return loaded.path
        return self.submit(run, key="load")

    def submit(self, run: Callable, key=None, progress=None) -> Job:
        job = Job(run, key, progress)
        with self._cv:
            self._count("submitted", job)
            if key is not None:
                for old in [j for j in self._queue if j.key == key]:
                    self._queue.remove(old)
                    old.cancel.set()
                    self._count("superseded", old)
                    if old.future.set_running_or_notify_cancel():
                        old.future.set_exception(Superseded())
                if self._running is not None and self._running.key == key:
                    self._running.cancel.set()
            self._queue.append(job)
            self._cv.notify()
        return job

    def settings(self) -> EngineSettings:
        return self.engine.settings if self.engine else EngineSettings()

    def stop(self, wait: float = 0.0) -> None:
        """Cancel everything; with ``wait``, give the running job that long to reach its next step."""
        with self._cv:
            self._stopped = True
            for job in self._queue:
                job.cancel.set()
                job.future.cancel()
            self._queue.clear()
            if self._running is not None:
                self._running.cancel.set()
            self._cv.notify()
        if wait:
            self._thread.join(wait)

    # -- the thread ---------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                job = self._queue.popleft()
                self._running = job
            try:
                self._run(job)
            except BaseException:  # bookkeeping itself failed: never let the thread die
                log.exception("worker error around job %s", job.key)
            finally:
                with self._cv:
                    self._running = None

    def _count(self, what: str, job: Job) -> None:
        if job.key != "load":
            with self._cv:
                self.stats[what] += 1

    def _run(self, job: Job) -> None:
        if not job.future.set_running_or_notify_cancel():  # cancelled while queued
            self._count("cancelled", job)
            return
        is_load = job.key == "load"
        if not is_load and self.engine is not None:
            self.on_status("busy", "")
        failed = False
        try:
            if job.cancel.is_set():
                raise Cancelled()
            if not is_load and self.engine is None:
                raise NoModel(self.model_error or "no model is loaded")
            self._count("started", job)
            result = job.run(self.engine, job.on_step)
        except Cancelled as exc:
            log.info("job %s cancelled after step %d of %d", job.key, job.step, job.total)
            self._count("cancelled", job)
            job.future.set_exception(exc)
        except NoModel as exc:
            self._count("failed", job)
            job.future.set_exception(exc)
        except BaseException as exc:  # delivered to the awaiting handler, never lost
            self._count("failed", job)
            failed = True  # the error status stays until a later job succeeds
            if not is_load:  # (a failed load has already said why)
                log.error("job %s failed at step %d of %d: %s", job.key, job.step, job.total,
                          exc or type(exc).__name__, exc_info=exc)
                self.on_status("error", f"a fill failed: {exc or type(exc).__name__}")  # before the answer
            job.future.set_exception(exc if isinstance(exc, Exception) else JobFailed(repr(exc)))
        else:
            self._count("completed", job)
            job.future.set_result(result)
        with self._cv:
            idle = len(self._queue) == 0
        if idle and not failed and self.engine is not None:
            self.on_status("ready", str(self.engine.loaded.path))
