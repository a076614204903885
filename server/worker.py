"""The one worker thread that owns the model: loading and every denoising job.

Heavy compute never runs on the event loop.  Jobs carry a supersede key
(document + job kind): a new job cancels the older one with the same key,
whether it is still queued or already running; a running job notices between
two denoising steps, so a cancelled request costs at most one more step.
"""
from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from diffusion_core.engine import EngineSettings, InfillEngine
from diffusion_core.loading import load_model
from diffusion_core.sampler import Cancelled

log = logging.getLogger("diffill.worker")

StatusCallback = Callable[[str, str], None]  # (state, message): loading | ready | busy | error


class Superseded(Exception):
    """A newer job for the same document and kind replaced this one before it ran."""


@dataclass
class Job:
    fn: Callable                      # fn(engine, on_step) -> result
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
        self._thread = threading.Thread(target=self._loop, name="diffill-worker", daemon=True)
        self._thread.start()

    # -- public -----------------------------------------------------------------
    def load(self, model: str, threads: int = 0) -> Job:
        """Load ``model`` on the worker; the previous engine serves until the new one is ready."""
        def run(_engine, _on_step):
            self.on_status("loading", f"loading model {model or 'default'}")
            try:
                loaded = load_model(model or None, threads=threads or None)
            except Exception as exc:  # ModelLoadError, or anything a broken model dir raises
                self.model_error = str(exc)
                log.error("model load failed: %s", exc)
                self.on_status("error", str(exc))
                raise
            finally:
                self.ready.set()
            self.engine = InfillEngine(loaded)
            self.model_error = None
            log.info("model ready: %s", loaded.path)
            return loaded.path
        return self.submit(run, key="load")

    def submit(self, fn: Callable, key=None, progress=None) -> Job:
        job = Job(fn, key, progress)
        with self._cv:
            if key is not None:
                for old in [j for j in self._queue if j.key == key]:
                    self._queue.remove(old)
                    old.cancel.set()
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
            if not job.future.set_running_or_notify_cancel():
                continue
            if job.key != "load" and self.engine is not None:
                self.on_status("busy", "")
            try:
                if job.cancel.is_set():
                    raise Cancelled()
                if job.key != "load" and self.engine is None:
                    raise RuntimeError(self.model_error or "no model is loaded")
                job.future.set_result(job.fn(self.engine, job.on_step))
            except Cancelled as exc:
                log.info("job %s cancelled after step %d of %d", job.key, job.step, job.total)
                job.future.set_exception(exc)
            except BaseException as exc:  # delivered to the awaiting handler, never lost
                job.future.set_exception(exc)
            finally:
                with self._cv:
                    self._running = None
                    idle = not self._queue
                if idle and self.engine is not None:
                    self.on_status("ready", str(self.engine.loaded.path))
