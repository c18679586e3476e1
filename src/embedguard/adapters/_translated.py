"""What translating the peers' keywords produces (:class:`Translated`), and how it is filled.

Shared by :mod:`._vocabulary` (the OpenAI and Azure peers, and the dispatch), :mod:`._peers`
(the Cohere, Voyage AI, Gemini, Bedrock and TEI peers) and :mod:`._peer_finish` (what only the
provider, once known, decides). No framework imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embedguard.core.errors import ConfigurationError

__all__ = ["Translated", "put"]


@dataclass
class Translated:
    """What the peer keywords mean here, sorted by where each lands.

    Attributes:
        settings: The adapter's own keywords (``provider``, ``model``, ``api_key``...).
        layer: Profile changes, applied as a layer (a partial policy keeps the provider's rest).
        options: :class:`~embedguard.EmbeddingClient` keywords (``context_policy``...).
        http: Headers, query parameters or a proxy for the adapter's own HTTP clients.
        show_progress: LangChain's ``show_progress_bar``, when given.
        ignored: Accepted keywords that change nothing, with the reason (one warning).
        implied: Peer keyword -> the provider it belongs to (to infer ``provider=``).
        cut: A peer's truncation switch: ``True`` cut the end of an over-long text, ``False``
            never cut, ``None`` not given.
        normalize: langchain-aws's ``normalize`` switch, when given.
        aws: AWS credentials or profile given as keywords (kept out of ``repr``).
        environ: The variables the client reads instead of ``os.environ`` (AWS keywords only).
    """

    settings: dict[str, Any] = field(default_factory=dict)
    layer: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)
    show_progress: bool | None = None
    ignored: dict[str, str] = field(default_factory=dict)
    implied: dict[str, str] = field(default_factory=dict)
    cut: bool | None = None
    normalize: bool | None = None
    aws: dict[str, str] = field(default_factory=dict, repr=False)
    environ: dict[str, str] | None = field(default=None, repr=False)

    def empty(self) -> bool:
        """Nothing that would change the profile, the client or its connections."""
        changes = (self.settings, self.layer, self.options, self.http, self.aws)
        return not any(changes) and self.cut is None and not self.normalize

    def given(self) -> list[str]:
        """The names of everything set, for an error message (never the values)."""
        names = {*self.settings, *self.layer, *self.options, *self.http, *self.aws}
        if self.cut is not None:
            names.add("truncation")
        if self.normalize:
            names.add("normalize")
        return sorted(names)


def put(target: dict[str, Any], name: str, value: Any) -> None:
    """Set ``target[name]``, refusing a second, different value for it.

    Raises:
        ConfigurationError: ``name`` already holds another value.
    """
    if target.get(name, value) != value:
        raise ConfigurationError(f"two values given for {name}", field=name)
    target[name] = value
