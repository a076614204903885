"""The Diffill language server: one place that creates the server and registers every handler.

Features are small classes (``server/features``); each owns its handlers'
logic, and this module only wires them to LSP methods.
"""
from __future__ import annotations

import asyncio
import logging

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from . import __version__
from .config import Settings, parse_settings
from .features.actions import ActionFeature, COMMANDS
from .features.completions import CompletionFeature
from .features.status import StatusFeature
from .worker import InferenceWorker

log = logging.getLogger("diffill.server")


class DiffillServer(LanguageServer):
    def __init__(self, model_override: str | None = None):
        super().__init__("diffill", __version__)
        self.settings = Settings()
        self.model_override = model_override
        self.initialized = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.status = StatusFeature(self)
        self.worker = InferenceWorker(self.status.from_worker)
        self.completions = CompletionFeature(self)
        self.actions = ActionFeature(self)
        self._loaded_model: str | None = None
        self._pending_problems: list[str] = []  # settings problems found before the client can be told

    # -- helpers shared by features ------------------------------------------------
    def call_soon(self, fn, *args) -> None:
        """Run ``fn`` on the event loop (worker threads must not write to the transport themselves)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def show(self, message: str, kind=types.MessageType.Warning) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=f"Diffill: {message}"))

    def apply_settings(self, raw, source: str) -> None:
        settings, problems = parse_settings(raw, self.settings)
        for p in problems:
            log.warning("%s: %s", source, p)
            if self.initialized:
                self.show(f"{source}: {p}")
            else:
                self._pending_problems.append(f"{source}: {p}")
        self.settings = settings
        self.ensure_model()

    def ensure_model(self) -> None:
        """(Re)load the model in the background when the wanted one changed."""
        wanted = self.model_override or self.settings.model
        if wanted == self._loaded_model:
            return
        self._loaded_model = wanted
        self.worker.load(wanted, self.settings.threads)


def create_server(model: str | None = None) -> DiffillServer:
    server = DiffillServer(model)

    @server.feature(types.INITIALIZE)
    def initialize(ls: DiffillServer, params: types.InitializeParams):
        ls.loop = asyncio.get_running_loop()
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

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: DiffillServer, params: types.InlineCompletionParams):
        return await ls.completions.inline(params)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[]))
    async def completion(ls: DiffillServer, params: types.CompletionParams):
        return await ls.completions.items(params)

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.RefactorRewrite, types.CodeActionKind.QuickFix],
        resolve_provider=True))
    async def code_action(ls: DiffillServer, params: types.CodeActionParams):
        return await ls.actions.list(params)

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: DiffillServer, action: types.CodeAction):
        return await ls.actions.resolve(action)

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
