"""The Diffill language server: one place that creates the server and registers every handler.

Features are small classes (``server/features``); each owns its handlers'
logic, and this module only wires them to LSP methods.

Every request gets an answer: before ``initialize`` it is ``ServerNotInitialized``,
with params that do not match the LSP types it is ``InvalidParams`` (pygls alone
would log and never answer).  The server exits when its input closes and when
the editor process named in ``initialize`` (``processId``) is gone.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import types as pytypes

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcServerNotInitialized
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from . import __version__
from .compat import repair
from .config import Settings, parse_settings
from .documents import install_workspace
from .features.actions import ActionFeature, COMMANDS
from .features.completions import CompletionFeature
from .features.status import StatusFeature
from .worker import InferenceWorker

log = logging.getLogger("diffill.server")
PARENT_POLL_S = float(os.environ.get("DIFFILL_PARENT_POLL_S", "2"))
_IGNORED = pytypes.SimpleNamespace(jsonrpc="(ignored)")  # handle_message drops it: not JSON-RPC 2.0


class DiffillProtocol(LanguageServerProtocol):
    """pygls' protocol, answering the requests it would drop or misanswer, and reading the malformed
    params of known old clients (``compat.py``)."""

    def __init__(self, server, converter):
        super().__init__(server, converter)
        self.initialize_seen = False

    def structure_message(self, data):
        if isinstance(data, dict) and "jsonrpc" in data:  # the top-level message (nested objects come first)
            data = repair(data)
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            # Only the top-level message reaches here (pygls' object hook passes nested objects through).
            method = data.get("method") if isinstance(data, dict) else None
            detail = _describe(exc.__cause__) or exc.message
            log.warning("invalid %s message: %s", method or "JSON-RPC", detail)
            if isinstance(data, dict) and method and data.get("id") is not None:
                self._send_response(data["id"], error=JsonRpcInvalidParams(
                    f"invalid params for {method}: {detail}").to_response_error())
            return _IGNORED

    def handle_message(self, message):
        method = getattr(message, "method", None)
        if method == types.INITIALIZE:
            self.initialize_seen = True
        elif method is not None and not self.initialize_seen and method != types.EXIT:
            if getattr(message, "id", None) is not None:  # a request: answer it; notifications are dropped
                self._send_response(message.id, error=JsonRpcServerNotInitialized(
                    f"{method} before initialize: the server is not initialized yet").to_response_error())
            else:
                log.info("dropped %s before initialize", method)
            return
        super().handle_message(message)


def _describe(cause) -> str:
    if cause is None:
        return ""
    try:
        from cattrs import transform_error
        return "; ".join(transform_error(cause))[:500]
    except Exception:
        return str(cause)[:500]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but is not ours
        return True
    try:  # a zombie (dead, not yet reaped) is gone for our purposes
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class DiffillServer(LanguageServer):
    def __init__(self, model_override: str | None = None):
        super().__init__("diffill", __version__, protocol_cls=DiffillProtocol)
        self.settings = Settings()
        self.model_override = model_override
        self.initialized = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.status = StatusFeature(self)
        self.worker = InferenceWorker(self.status.from_worker)
        self.completions = CompletionFeature(self)
        self.actions = ActionFeature(self)
        self._loaded_model: tuple[str, str] | None = None  # (model, precision)
        self._pending_problems: list[str] = []  # settings problems found before the client can be told

    # -- helpers shared by features ------------------------------------------------
    def call_soon(self, fn, *args) -> None:
        """Run ``fn`` on the event loop (worker threads must not write to the transport themselves)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def show(self, message: str, kind=types.MessageType.Warning) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"Diffill: {message}"))

    def apply_settings(self, raw, source: str) -> None:
        try:
            settings, problems = parse_settings(raw, self.settings)
        except Exception as exc:  # a value parse_settings did not foresee: keep what we had, say so
            settings = self.settings
            problems = [f"settings could not be read ({type(exc).__name__}: {exc}); the previous ones stay"]
        for p in problems:
            log.warning("%s: %s", source, p)
            if self.initialized:
                self.show(f"{source}: {p}")
            else:
                self._pending_problems.append(f"{source}: {p}")
        self.settings = settings
        self.ensure_model()

    def watch_parent(self, pid: int | None) -> None:
        """Exit when the editor process ``pid`` is gone, even if our input never closes (POSIX only)."""
        if not pid or os.name != "posix" or pid == os.getpid() or not _process_alive(pid):
            return

        def watch():
            while _process_alive(pid):
                threading.Event().wait(PARENT_POLL_S)
            log.warning("the editor (process %d) is gone; Diffill exits", pid)
            self.exit_now(0)
        threading.Thread(target=watch, name="diffill-parent-watch", daemon=True).start()

    def exit_now(self, code: int = 0) -> None:
        """Stop the worker and leave at once (a thread blocked reading stdin cannot be joined)."""
        try:
            self.worker.stop(wait=2.0)
            logging.shutdown()
        finally:
            os._exit(code)

    def ensure_model(self) -> None:
        """(Re)load the model in the background when the wanted one changed."""
        wanted = (self.model_override or self.settings.model, self.settings.precision)
        if wanted == self._loaded_model:
            return
        self._loaded_model = wanted
        self.worker.load(wanted[0], self.settings.threads, wanted[1])


def create_server(model: str | None = None) -> DiffillServer:
    server = DiffillServer(model)

    @server.feature(types.INITIALIZE)
    def initialize(ls: DiffillServer, params: types.InitializeParams):
        ls.loop = asyncio.get_running_loop()
        install_workspace(ls.workspace)  # LSP line ends, cached lines (see documents.py)
        ls.watch_parent(params.process_id)
        ls.apply_settings(params.initialization_options, "initializationOptions")

    @server.feature(types.INITIALIZED)
    async def initialized(ls: DiffillServer, params: types.InitializedParams):
        ls.loop = asyncio.get_running_loop()
        ls.initialized = True
        ls.status.publish(ls.status.state, ls.status.message, force=True)
        for p in ls._pending_problems:
            ls.show(p)
        ls._pending_problems = []
        caps = ls.client_capabilities
        if caps.workspace and caps.workspace.configuration:
            try:
                items = await ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section="diffill")]))
                if items and items[0] is not None:
                    ls.apply_settings(items[0], "workspace/configuration")
            except Exception as exc:  # a client that advertises but fails the request
                log.warning("workspace/configuration failed: %s", exc)
        ls.ensure_model()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: DiffillServer, params: types.DidChangeConfigurationParams):
        raw = params.settings
        caps = ls.client_capabilities
        if (not isinstance(raw, dict) or "diffill" not in raw) and caps.workspace and caps.workspace.configuration:
            items = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="diffill")]))
            raw = items[0] if items else None
        ls.apply_settings(raw, "settings")

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DiffillServer, params: types.DidCloseTextDocumentParams):
        ls.completions.forget(params.text_document.uri)

    # The features' own methods are the handlers: nothing in between (pygls marks what it registers, and a
    # bound method takes no attributes: a partial of it does).
    def handler(method):
        return functools.partial(method)
    server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(
        handler(server.completions.inline))
    server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[]))(
        handler(server.completions.items))
    server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.RefactorRewrite, types.CodeActionKind.QuickFix],
        resolve_provider=True))(handler(server.actions.list))
    server.feature(types.CODE_ACTION_RESOLVE)(handler(server.actions.resolve))

    for name in COMMANDS:
        server.command(name)(_command_handler(name))

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: DiffillServer, *args):
        ls.worker.stop(wait=5.0)

    return server


def _command_handler(name: str):
    async def handler(ls: DiffillServer, *args):
        return await ls.actions.command(name, list(args))
    handler.__name__ = name.replace(".", "_")
    return handler
