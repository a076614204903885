"""Diffill's engine, models and command line.

Diffill never talks to the Hugging Face Hub: models come from folders (named, shipped, or already in the local
hub cache).  The hub library is told so before anything imports it, because even its local-only calls
(``local_files_only=True``) would otherwise fetch a list from the Hub for its telemetry.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
