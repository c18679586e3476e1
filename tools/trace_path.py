"""Trace the path of one ``client.embed(["hello world"])`` through embedguard's modules.

Runs a loopback server (``embedguard.testing.EmbeddingServer``), warms the client up with one call,
then traces the next call with :func:`sys.settrace` on every thread, recording each embedguard
function entered (a resumed generator counts as entered again). Prints the module sequence, the
number of distinct modules, module switches (consecutive calls in different modules) and calls::

    python tools/trace_path.py                     # the sync path
    python tools/trace_path.py --async             # the async path
    python tools/trace_path.py --provider cohere   # another wire format of the loopback server
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import embedguard
from embedguard import EmbeddingClient, profiles
from embedguard.testing import EmbeddingServer

ROOT = str(Path(embedguard.__file__).parent)


def module_of(filename: str) -> str | None:
    if not filename.startswith(ROOT):
        return None
    rel = filename[len(ROOT) + 1 :].removesuffix(".py").replace("/", ".")
    return rel.removesuffix(".__init__")


def trace(run: Any) -> list[tuple[str, str]]:
    entered: list[tuple[str, str]] = []
    lock = threading.Lock()

    def tracer(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            module = module_of(frame.f_code.co_filename)
            if module is not None:
                with lock:
                    entered.append((module, frame.f_code.co_qualname))
        return None

    threading.settrace(tracer)  # type: ignore[arg-type]
    sys.settrace(tracer)  # type: ignore[arg-type]
    try:
        run()
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
    return entered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--async", dest="use_async", action="store_true", help="trace aembed")
    parser.add_argument("--calls", action="store_true", help="print every function entered")
    parser.add_argument("--provider", default="openai", help="a profile the loopback server speaks")
    args = parser.parse_args()
    with EmbeddingServer(dimensions=256) as server:
        profile = profiles.get(
            args.provider, base_url=server.base_url(args.provider), dimensions=256
        )
        client = EmbeddingClient(profile, api_key="sk-test", hooks=[], environ={})
        if args.use_async:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(client.aembed(["warm up"]))
            entered = trace(lambda: loop.run_until_complete(client.aembed(["hello world"])))
            loop.run_until_complete(client.aclose())
            loop.close()
        else:
            client.embed(["warm up"])
            entered = trace(lambda: client.embed(["hello world"]))
            client.close()
    sequence: list[str] = []
    for module, _ in entered:
        if not sequence or sequence[-1] != module:
            sequence.append(module)
    if args.calls:
        for module, name in entered:
            print(f"  {module}:{name}")
    print(" -> ".join(sequence))
    print(
        f"modules: {len(set(m for m, _ in entered))}  switches: {len(sequence) - 1}  "
        f"calls: {len(entered)}"
    )


if __name__ == "__main__":
    main()
