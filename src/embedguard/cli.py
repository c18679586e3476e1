"""The ``embedguard`` command: embed a file, list profiles, show saved metrics, run the demo.

::

    embedguard embed docs.txt -o docs.npy --profile openai      # resumable; prints metrics
    embedguard embed rows.csv --column body -o rows.jsonl --profile-file prod.toml
    embedguard profiles                 # the built-in profiles, one line each
    embedguard profiles mistral         # one profile as TOML (a starting point for --profile-file)
    embedguard profiles azure --effective          # every value, and where it came from
    embedguard profiles --profile-file prod.toml --effective
    embedguard metrics run.json         # a snapshot saved with --metrics-out
    embedguard demo                     # retrieval over a bundled corpus, offline

Errors are one line on stderr, ``embedguard: error: ...``; the exit status is 2 for a usage or
input error (nothing was sent), 1 for a failure while running, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from ._checkpoint import Checkpoint, CheckpointError, checkpoint_settings
from ._embedjob import (
    JobError,
    Progress,
    Records,
    assemble,
    input_format,
    quiet_model_loading,
    read_records,
    run_chunks,
)
from ._extras import MissingExtraError
from .core import profiles
from .core.client import EmbeddingClient
from .core.config import ProviderProfile, RateLimit
from .core.errors import ConfigurationError, EmbedGuardError, InputValidationError
from .core.metrics import MetricsSnapshot

__all__ = ["main"]

_USAGE, _FAILED, _INTERRUPTED = 2, 1, 130
# The largest call the client sends as one request: it splits bigger ones over its pool
# (core.planning.plan_batches, min_batch_inputs).
_REQUEST_TEXTS = 32


class _UsageError(Exception):
    """The invocation or its input is wrong; nothing was sent (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), in the command's error format."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see: {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="embedguard", description="Resilient, observable embeddings.")
    parser.add_argument("--version", action="version", version=f"embedguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    embed = commands.add_parser("embed", help="embed a text, JSONL or CSV file (resumable)")
    embed.add_argument("input", type=Path, help="text (one per line), .jsonl or .csv file")
    embed.add_argument("-o", "--output", type=Path, help=".npy or .jsonl (default: INPUT as .npy)")
    source = embed.add_mutually_exclusive_group()
    source.add_argument("--profile", default="local", help="built-in profile (default: local)")
    source.add_argument("--profile-file", type=Path, help="a profile in TOML")
    embed.add_argument("--model", help="model name (overrides the profile's)")
    embed.add_argument("--base-url", help="endpoint root (overrides the profile's)")
    embed.add_argument("--dimensions", type=int, help="output vector size")
    embed.add_argument("--format", choices=("auto", "text", "jsonl", "csv"), default="auto")
    embed.add_argument("--field", default="text", help="JSONL field holding the text")
    embed.add_argument("--column", default="text", help="CSV column holding the text")
    embed.add_argument("--skip-empty", action="store_true", help="skip empty texts (else: error)")
    embed.add_argument("--batch-size", type=int, help="texts per request (default: profile's)")
    embed.add_argument(
        "--chunk-size", type=int,
        help="texts per checkpoint chunk, saved as soon as it completes (default: one request's)",
    )  # fmt: skip
    embed.add_argument(
        "--resume", action=argparse.BooleanOptionalAction, default=True,
        help="reuse the texts an earlier run of this output finished (default: on)",
    )  # fmt: skip
    embed.add_argument("--metrics-out", type=Path, help="save the metrics snapshot as JSON")
    embed.add_argument("--no-progress", action="store_true", help="no progress bar")

    shown = commands.add_parser("profiles", help="list the built-in profiles, or show one")
    shown.add_argument("name", nargs="?", help="show this profile as TOML")
    shown.add_argument("--profile-file", type=Path, help="show this TOML profile instead")
    shown.add_argument("--model", help="model name (overrides the profile's)")
    shown.add_argument(
        "--effective", action="store_true",
        help="every effective value, commented with where it came from",
    )  # fmt: skip

    metrics = commands.add_parser("metrics", help="format a metrics snapshot saved as JSON")
    metrics.add_argument("file", type=Path)

    demo = commands.add_parser("demo", help="offline retrieval demo over a bundled corpus")
    demo.add_argument(
        "--provider", choices=profiles.names(),
        help="default: local (offline, even when OPENAI_API_KEY is set)",
    )  # fmt: skip
    demo.add_argument("--model", help="model name (overrides the profile's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        command = {"embed": _embed, "profiles": _profiles, "metrics": _metrics, "demo": _demo}
        return command[args.command](args)
    except _UsageError as exc:
        return _error(str(exc), _USAGE)
    except (ConfigurationError, InputValidationError, MissingExtraError) as exc:
        return _error(str(exc), _USAGE)
    except EmbedGuardError as exc:
        return _error(str(exc), _FAILED)
    except OSError as exc:
        return _error(_os_message(exc), _FAILED)
    except KeyboardInterrupt:
        return _error("interrupted", _INTERRUPTED)


def _error(message: str, status: int) -> int:
    print(f"embedguard: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def _os_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


# -- profiles ----------------------------------------------------------------------------------
def _profile(args: argparse.Namespace) -> ProviderProfile:
    overrides = {
        key: value
        for key, value in (
            ("model", args.model), ("base_url", getattr(args, "base_url", None)),
            ("dimensions", getattr(args, "dimensions", None)),
        )
        if value is not None
    }  # fmt: skip
    if getattr(args, "profile_file", None) is not None:
        try:
            profile = ProviderProfile.from_toml(args.profile_file)
        except OSError as exc:
            raise _UsageError(f"cannot read the profile file: {_os_message(exc)}") from None
        except ConfigurationError as exc:
            raise _UsageError(f"{args.profile_file}: {exc}") from None
        return profile.evolve(**overrides) if overrides else profile
    return profiles.get(args.profile, **overrides)


def _profiles(args: argparse.Namespace) -> int:
    if args.name is not None and args.profile_file is not None:
        raise _UsageError("give a profile NAME or --profile-file, not both")
    if args.name is not None or args.profile_file is not None:
        args.profile = args.name
        if args.name == "openai_compatible" and args.model is None:
            args.model = "MODEL"
            print("# set model, and base_url (e.g. http://localhost:8000/v1)")
        profile = _profile(args)
        print(profile.explain() if args.effective else profile.to_toml(), end="")
        return 0
    if args.effective:
        raise _UsageError("--effective needs a profile NAME or --profile-file")
    header = ("profile", "model", "dims", "timeout", "retries", "inputs", "rpm*", "tpm*", "pool")
    rows = [(*header, "breaker")]
    for name in profiles.names():
        model = "MODEL" if name == "openai_compatible" else None
        p = profiles.get(name, **({"model": model} if model else {}))
        b = p.breaker
        breaker = (
            f"{b.failure_rate_threshold:.0%} of {b.window_size} (>= {b.minimum_calls}), "
            f"{b.open_timeout:g} s"
            if b.enabled
            else "off"
        )
        limit = p.rate_limit or profiles.assumed_rate_limit(p.provider) or RateLimit()
        rows.append((
            name, "(required)" if model else p.model, _cell(p.dimensions),
            f"{p.timeouts.request:g} s", str(p.retry.max_retries), str(p.batching.max_inputs),
            _cell(limit.requests_per_minute), _cell(limit.tokens_per_minute),
            str(p.pool_size), breaker,
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) + 1)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print("\n* assumed until the server states its own limits (a rate_limit you set is a cap)")
    print("Show one as TOML: embedguard profiles NAME  (edit it, then: embed --profile-file)")
    return 0


def _cell(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


# -- metrics -----------------------------------------------------------------------------------
def _metrics(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.file.read_text("utf-8"))
    except OSError as exc:
        raise _UsageError(f"cannot read the metrics file: {_os_message(exc)}") from None
    except ValueError as exc:
        raise _UsageError(f"{args.file}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _UsageError(f"{args.file}: expected a JSON object (a saved metrics snapshot)")
    try:
        snapshot = MetricsSnapshot.from_dict(data)
    except ValueError as exc:
        raise _UsageError(f"{args.file}: {exc}") from None
    print(snapshot.format())
    return 0


# -- demo --------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace) -> int:
    from ._demo.demo import run_demo

    return run_demo(provider=args.provider, model=args.model)


# -- embed -------------------------------------------------------------------------------------
def _embed(args: argparse.Namespace) -> int:
    output: Path = args.output or args.input.with_suffix(".npy")
    if output.suffix.lower() not in (".npy", ".jsonl"):
        raise _UsageError(f"output must end in .npy or .jsonl, got {output.name!r}")
    if output.resolve() == args.input.resolve():
        raise _UsageError(f"the output would overwrite the input {str(args.input)!r}; use -o")
    for option in ("batch_size", "chunk_size", "dimensions"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise _UsageError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    profile = _profile(args)
    if args.batch_size is not None:
        batching = {**profile.batching.to_dict(), "max_inputs": args.batch_size}
        profile = profile.evolve(batching=batching)
    fmt = input_format(args.input, args.format)
    try:
        records = read_records(
            args.input, fmt, field=args.field if fmt == "jsonl" else "",
            column=args.column if fmt == "csv" else "", skip_empty=args.skip_empty,
        )  # fmt: skip
    except JobError as exc:
        raise _UsageError(str(exc)) from None
    except OSError as exc:
        raise _UsageError(f"cannot read the input: {_os_message(exc)}") from None
    # A chunk is one request's worth, saved the moment it completes: all a Ctrl-C can lose is
    # the requests in flight. The client splits a call of more than _REQUEST_TEXTS texts over
    # its pool, so a chunk holds at most that many, and as many chunks run at once as the
    # profile allows requests in flight. An in-process model runs one batch at a time on one
    # worker, so concurrent batches would only queue there (and the queueing counts against
    # each batch's timeout): one chunk of a full batch at a time.
    if profile.provider == "local":
        concurrency, default_chunk = 1, profile.batching.max_inputs
    else:
        concurrency = profile.pool_size
        default_chunk = min(profile.batching.max_inputs, _REQUEST_TEXTS)
    chunk_size = args.chunk_size or default_chunk
    checkpoint = Checkpoint(
        output.with_name(output.name + ".partial"), checkpoint_settings(profile)
    )
    if profile.provider == "local":
        quiet_model_loading()
    # No coalescing: each chunk is its own request, so each completes (and is saved) alone.
    with EmbeddingClient(profile, coalesce_window=0) as client:
        try:
            notes = checkpoint.open(resume=args.resume, input_sha256=records.sha256)
        except CheckpointError as exc:
            raise _UsageError(str(exc)) from None
        for note in notes:
            print(note)
        skipped = f", {records.skipped} empty skipped" if records.skipped else ""
        print(
            f"embedding {len(records.texts)} texts from {args.input} ({fmt}{skipped}; "
            f"{len(set(records.texts))} distinct) with {profile.name} / {profile.model}, "
            f"chunks of {chunk_size}, requests of up to {profile.batching.max_inputs}"
        )
        status = _run(args, client, records, checkpoint, (chunk_size, concurrency), output)
        if status == 0:
            print(client.metrics().format())
        _save_metrics(client, args.metrics_out)
    return status


def _run(
    args: argparse.Namespace,
    client: EmbeddingClient,
    records: Records,
    checkpoint: Checkpoint,
    chunking: tuple[int, int],
    output: Path,
) -> int:
    """Embed the distinct texts chunk by chunk, then write every record's vector."""
    unique = list(dict.fromkeys(records.texts))
    chunk_size, concurrency = chunking

    def progress(total: int, initial: int) -> Progress:
        if initial:
            print(f"resuming: {initial} of {total} texts already done in {checkpoint.directory}")
        return Progress(total, "embedding", initial=initial, enabled=not args.no_progress)

    try:
        vectors = run_chunks(client.aembed, unique, checkpoint, chunk_size, concurrency, progress)
    except (ConfigurationError, InputValidationError):
        _resume_hint(checkpoint, unique)  # nothing saved: no checkpoint left behind
        raise
    except EmbedGuardError as exc:
        return _error(f"{exc}{_resume_hint(checkpoint, unique)}", _FAILED)
    except KeyboardInterrupt:
        return _error(f"interrupted{_resume_hint(checkpoint, unique)}", _INTERRUPTED)
    except JobError as exc:
        raise _UsageError(str(exc)) from None
    row_of = {text: row for row, text in enumerate(unique)}
    rows = vectors[[row_of[text] for text in records.texts]]
    assemble(output, rows, records.positions)
    checkpoint.remove()
    print(f"wrote {rows.shape[0]} vectors of {rows.shape[1]} dimensions to {output}")
    return 0


def _resume_hint(checkpoint: Checkpoint, texts: list[str]) -> str:
    """What was kept of a failed run (nothing: the checkpoint is removed)."""
    found = checkpoint.load()
    saved = sum(checkpoint.key(text) in found for text in texts)
    if not found:
        checkpoint.remove()
        return ""
    return (
        f" [{saved} of {len(texts)} texts saved in {checkpoint.directory}; "
        "rerun the same command to resume]"
    )


def _save_metrics(client: EmbeddingClient, path: Path | None) -> None:
    if path is not None:
        path.write_text(client.metrics().to_json(indent=2) + "\n", encoding="utf-8")
