"""AWS plumbing for the Bedrock codec: region, credentials and SigV4 signing, all through botocore.

botocore (the ``bedrock`` extra) is imported here only, and only when a Bedrock codec needs it:
to sign (SigV4), or to read the region from the shared AWS config when nothing else names it. A
Bedrock API key (``Authorization: Bearer``) needs no botocore at all.

Signing is botocore's own ``SigV4Auth`` on an ``AWSRequest``: the exact URL (model id already
percent-encoded) and the exact body bytes sent are what is signed, with the body's SHA-256 in
``X-Amz-Content-SHA256``. Credentials come from botocore's standard chain, resolved once and
lazily (the chain may ask an instance-metadata endpoint): static keys are used as they are,
refreshable ones (SSO, assumed roles, instance and container roles) are refreshed by botocore,
since each request signs with ``get_frozen_credentials()``.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from embedguard._extras import MissingExtraError, require
from embedguard.core.config import ProviderProfile
from embedguard.core.errors import AuthenticationError, ConfigurationError

__all__ = ["SigV4Signer", "load_botocore", "resolve_region"]

SERVICE = "bedrock"
"""The SigV4 signing name (the host prefix is ``bedrock-runtime``, the signing name is not)."""

# A region is put into a host name: accept only what region names look like (us-east-1,
# us-gov-west-1, eu-central-2, ...), never dots, slashes or spaces.
_REGION = re.compile(r"[a-z][a-z0-9-]{0,48}[0-9]")
# botocore logs the canonical request (with the session token), the string to sign and the
# signature at DEBUG while it signs; the records of our own signing are dropped.
_SIGNING_MESSAGES = frozenset({"CanonicalRequest:\n%s", "StringToSign:\n%s", "Signature:\n%s"})
_signing = contextvars.ContextVar("embedguard_sigv4_signing", default=False)
_filter_lock = threading.Lock()
_filter_installed = False
_NO_CREDENTIALS = (
    "no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
    "AWS_SESSION_TOKEN), or AWS_PROFILE, or configure SSO or an instance role; or pass a Bedrock "
    "API key (api_key, or AWS_BEARER_TOKEN_BEDROCK)"
)


def load_botocore(module: str, profile: ProviderProfile) -> ModuleType:
    """Import ``botocore.<module>``, or raise a :class:`ConfigurationError` naming the extra.

    Raises:
        ConfigurationError: botocore is not installed (``pip install 'embedguard[bedrock]'``).
    """
    try:
        return require(f"botocore.{module}", "bedrock")
    except MissingExtraError as exc:
        raise ConfigurationError(
            f"SigV4 signing needs botocore: {exc}", field="provider", provider=profile.name
        ) from exc


def _check_region(value: str, where: str, profile: ProviderProfile) -> str:
    region = value.strip()
    if not _REGION.fullmatch(region):
        raise ConfigurationError(
            f"{where} is not an AWS region name: {value!r}", field="region", provider=profile.name
        )
    return region


def resolve_region(
    profile: ProviderProfile, environ: Mapping[str, str], *, required: bool
) -> str | None:
    """The region: ``profile.region``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the
    region of the shared AWS config (the profile ``AWS_PROFILE`` names, read by botocore).

    Args:
        profile: The Bedrock profile.
        environ: Where to read ``AWS_REGION``, ``AWS_DEFAULT_REGION`` and ``AWS_PROFILE``.
        required: Raise when no region is found (else return ``None``).

    Raises:
        ConfigurationError: ``field="region"``: none found while required, or not a region name.
    """
    if profile.region:
        return _check_region(profile.region, "profile.region", profile)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = environ.get(name, "").strip()
        if value:
            return _check_region(value, name, profile)
    configured = _configured_region(profile, environ)
    if configured:
        return _check_region(configured, "the AWS config's region", profile)
    if not required:
        return None
    raise ConfigurationError(
        "no AWS region; set profile.region, AWS_REGION or AWS_DEFAULT_REGION, or a region in "
        "the AWS config",
        field="region",
        provider=profile.name,
    )


def _configured_region(profile: ProviderProfile, environ: Mapping[str, str]) -> str | None:
    """The region botocore's session reads from the shared config, when botocore is here."""
    try:
        session_module = require("botocore.session", "bedrock")
    except MissingExtraError:
        return None
    try:
        session = session_module.Session(profile=environ.get("AWS_PROFILE") or None)
        region = session.get_config_variable("region")
    except Exception as exc:  # ProfileNotFound, a malformed config file...
        raise ConfigurationError(
            f"the AWS config could not be read: {type(exc).__name__}: {exc}",
            field="region",
            provider=profile.name,
        ) from exc
    return region if isinstance(region, str) and region.strip() else None


class _DropOwnSigningLogs(logging.Filter):
    """Drops botocore's DEBUG records of the signing embedguard does (secrets in them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_signing.get() and record.msg in _SIGNING_MESSAGES)


def _install_log_filter() -> None:
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            logging.getLogger("botocore.auth").addFilter(_DropOwnSigningLogs())
            _filter_installed = True


class SigV4Signer:
    """Signs Bedrock requests with botocore's ``SigV4Auth`` (service ``bedrock``).

    Credentials are resolved on the first :meth:`sign` (thread-safe, once): the keys in
    ``environ`` (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, read by
    botocore's ``EnvProvider``), else botocore's full chain for the profile ``AWS_PROFILE`` names
    (shared credentials and config files, SSO, container and instance roles). The secret key,
    the session token and the signature never appear in ``repr``, errors or logs.
    """

    __slots__ = ("_credentials", "_environ", "_failure", "_lock", "_modules", "_name", "region")

    def __init__(self, profile: ProviderProfile, region: str, environ: Mapping[str, str]) -> None:
        self._modules = {m: load_botocore(m, profile) for m in ("auth", "awsrequest")}
        self.region = region
        self._name = profile.name
        self._environ = environ
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._failure: Callable[[], Exception] | None = None
        _install_log_filter()

    def __repr__(self) -> str:
        state = "resolved" if self._credentials is not None else "unresolved"
        return f"SigV4Signer(service={SERVICE!r}, region={self.region!r}, credentials={state})"

    def _resolve(self) -> Any:
        """botocore credentials from ``environ``'s keys, else from the standard chain."""
        credentials_module = require("botocore.credentials", "bedrock")
        found = credentials_module.EnvProvider(environ=self._environ).load()
        if found is None:
            session_module = require("botocore.session", "bedrock")
            profile = self._environ.get("AWS_PROFILE") or None
            found = session_module.Session(profile=profile).get_credentials()
        return found

    def _frozen(self) -> Any:
        """The current credentials (refreshed by botocore when they are about to expire)."""
        with self._lock:
            if self._credentials is None and self._failure is None:
                try:
                    self._credentials = self._resolve()
                except Exception as exc:  # a broken profile, an expired SSO session...
                    message = f"AWS credentials could not be resolved: {type(exc).__name__}: {exc}"
                    self._failure = lambda: AuthenticationError(message[:400], provider=self._name)
                else:
                    if self._credentials is None:
                        self._failure = lambda: ConfigurationError(
                            _NO_CREDENTIALS, field="credentials", provider=self._name
                        )
            if self._failure is not None:
                raise self._failure()
            credentials = self._credentials
        try:
            return credentials.get_frozen_credentials()
        except Exception as exc:  # a refresh that failed (expired SSO session, revoked role)
            raise AuthenticationError(
                f"AWS credentials could not be refreshed: {type(exc).__name__}", provider=self._name
            ) from exc

    def secrets(self) -> tuple[str | None, ...]:
        """The secret key and session token in use (to scrub from provider messages)."""
        credentials = self._credentials
        if credentials is None:
            return ()
        return (getattr(credentials, "secret_key", None), getattr(credentials, "token", None))

    def sign(self, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers to send: ``headers`` plus ``X-Amz-Date``, ``X-Amz-Content-SHA256``,
        ``X-Amz-Security-Token`` (temporary credentials) and ``Authorization``.

        Raises:
            ConfigurationError: No credentials were found anywhere.
            AuthenticationError: The credentials could not be resolved or refreshed.
        """
        frozen = self._frozen()
        request = self._modules["awsrequest"].AWSRequest(
            method="POST", url=url, data=body, headers=dict(headers)
        )
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
        token = _signing.set(True)
        try:
            self._modules["auth"].SigV4Auth(frozen, SERVICE, self.region).add_auth(request)
        finally:
            _signing.reset(token)
        return dict(request.headers.items())
