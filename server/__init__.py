"""Diffill's language server (pygls 2): inline completion, completion items, code actions, commands."""
__version__ = "0.1.0"
