"""Assemble Diffill's offline training corpus from registry packages.

Every source is a Debian package fetched with ``apt-get download`` (unpacked
with ``dpkg-deb -x``, nothing is installed) or the running Python's standard
library.  Each document is one whole file; a stable hash of its path decides
whether it lands in the train or the dev split, so dev files are never seen
in training.  ``manifest.json`` records every source, its version, licence,
file count and size.

Wikipedia-derived text is reserved for evaluation and never read here.

Usage: python -m diffusion_core.train.build_corpus OUT_DIR [--dev-percent 3]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# (package, licence, glob inside the unpacked package, kind)
DEBIAN_SOURCES = [
    ("python3.11-doc", "PSF-2.0", "usr/share/doc/python3.11/html/_sources/**/*.txt", "prose"),
    ("python-django-doc", "BSD-3-Clause", "usr/share/doc/python-django-doc/html/[a-z]*/**/*.html", "html"),
    ("postgresql-doc-15", "PostgreSQL", "usr/share/doc/postgresql-doc-15/html/*.html", "html"),
    ("debian-handbook", "GPL-2.0+ / CC-BY-SA-3.0", "usr/share/doc/debian-handbook/html/en-US/*.html", "html"),
    ("git-doc", "GPL-2.0", "usr/share/doc/git-doc/*.txt", "prose"),
]
MAX_DOC_CHARS = 400_000
TAG_RE = re.compile(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", re.S | re.I)


def html_to_text(html: str) -> str:
    import html as html_mod
    text = TAG_RE.sub("", html)
    text = html_mod.unescape(text)
    lines = [ln.rstrip() for ln in text.splitlines()]
    out, blank = [], 0
    for ln in lines:
        blank = blank + 1 if not ln.strip() else 0
        if blank <= 1:
            out.append(ln)
    return "\n".join(out).strip() + "\n"


def package_version(pkg: str) -> str:
    out = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True).stdout
    m = re.search(r"Candidate:\s*(\S+)", out)
    return m.group(1) if m else "unknown"


def fetch_debian(pkg: str, work: Path) -> Path | None:
    dest = work / pkg
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["apt-get", "download", pkg], cwd=dest, capture_output=True, text=True)
    debs = list(dest.glob("*.deb"))
    if r.returncode != 0 or not debs:
        print(f"skip {pkg}: {r.stderr.strip()[:200]}", file=sys.stderr)
        return None
    root = dest / "root"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
    return root


def split_of(key: str, dev_percent: float) -> str:
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % 10_000
    return "dev" if h < dev_percent * 100 else "train"


def iter_documents(work: Path):
    for pkg, licence, pattern, kind in DEBIAN_SOURCES:
        root = fetch_debian(pkg, work)
        if root is None:
            continue
        source = {"source": pkg, "version": package_version(pkg), "licence": licence, "origin": "debian"}
        for f in sorted(root.glob(pattern)):
            if not f.is_file() or f.is_symlink():
                continue
            raw = f.read_bytes()[: MAX_DOC_CHARS * 2]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if kind == "html":
                text = html_to_text(text)
            yield source, f"{pkg}/{f.relative_to(root)}", "prose", text[:MAX_DOC_CHARS]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    source = {"source": "cpython-stdlib", "version": sys.version.split()[0], "licence": "PSF-2.0", "origin": "python"}
    for f in sorted(stdlib.rglob("*.py")):
        rel = f.relative_to(stdlib)
        if rel.parts[0] in {"test", "site-packages", "lib2to3", "idlelib", "turtledemo"} or "tests" in rel.parts:
            continue
        try:
            text = f.read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield source, f"stdlib/{rel}", "code", text[:MAX_DOC_CHARS]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dev-percent", type=float, default=3.0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            open(args.out / "train.jsonl", "w") as ftrain, open(args.out / "dev.jsonl", "w") as fdev:
        for source, key, kind, text in iter_documents(Path(tmp)):
            if len(text.strip()) < 200:
                continue
            split = split_of(key, args.dev_percent)
            (fdev if split == "dev" else ftrain).write(
                json.dumps({"id": key, "kind": kind, "source": source["source"], "text": text}) + "\n")
            entry = manifest.setdefault(source["source"], dict(source, files={"train": 0, "dev": 0}, chars=0))
            entry["files"][split] += 1
            entry["chars"] += len(text)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name, e in manifest.items():
        print(f"{name:22} {e['version']:28} {e['licence']:24} {e['files']} {e['chars'] / 1e6:.1f}M chars", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
