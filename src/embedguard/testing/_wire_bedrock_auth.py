"""How the test server's Bedrock route checks a request's credentials, as AWS does.

A request must carry ``Authorization: Bearer <Bedrock API key>`` or a well-formed SigV4
signature: ``AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/bedrock/aws4_request,
SignedHeaders=...;host;...;x-amz-date..., Signature=<64 hex>``, with the scope's date that of
``X-Amz-Date``, an ``X-Amz-Date`` within five minutes of the server's clock, every signed
header present, and ``X-Amz-Content-SHA256`` (when sent) the SHA-256 of the body bytes
received. When the server has a ``require_key`` it is the Bedrock API key a bearer token must
equal, or the secret access key the signature is checked with: the server recomputes it with
botocore over the raw path, the signed headers and the body, and compares.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from urllib.parse import quote

from embedguard._extras import require

from ._errors import ErrorSpec
from ._http import HttpRequest

__all__ = ["auth_error"]

_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)"
    r"/(?P<service>[a-z0-9-]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})"
)
_SKEW = datetime.timedelta(minutes=5)
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def _denied(name: str, message: str, status: int = 403) -> ErrorSpec:
    return ErrorSpec(status, message, code=name, kind="auth")


def _expected_signature(request: HttpRequest, match: re.Match[str], secret: str) -> str:
    """The signature botocore computes for this request with ``secret``."""
    auth, awsrequest, credentials_module = (
        require(f"botocore.{name}", "bedrock") for name in ("auth", "awsrequest", "credentials")
    )
    signed = match["signed"].split(";")
    host = request.headers.get("host", "")
    path = request.raw_path or quote(request.path)
    headers = {name: request.headers[name] for name in signed}
    url = f"http://{host}{path}"
    aws = awsrequest.AWSRequest(method=request.method, url=url, data=request.body, headers=headers)
    aws.context["timestamp"] = request.headers["x-amz-date"]
    credentials = credentials_module.Credentials(
        match["key"], secret, request.headers.get("x-amz-security-token")
    )
    signer = auth.SigV4Auth(credentials, match["service"], match["region"])
    canonical = signer.canonical_request(aws)
    signature: str = signer.signature(signer.string_to_sign(aws, canonical), aws)
    return signature


def _sigv4_error(request: HttpRequest, header: str, secret: str | None) -> ErrorSpec | None:
    match = _SIGV4.fullmatch(header.strip())
    if match is None:
        message = f"Authorization needs Credential, SignedHeaders and Signature: {header[:40]!r}"
        return _denied("IncompleteSignatureException", message, 400)
    if match["service"] != "bedrock":
        return _denied("InvalidSignatureException", f"Credential should be scoped to correct "
                       f"service: 'bedrock', not {match['service']!r}.")  # fmt: skip
    signed = match["signed"].split(";")
    missing = [name for name in ("host", "x-amz-date") if name not in signed]
    missing += [name for name in signed if name not in request.headers]
    if missing:
        return _denied("IncompleteSignatureException", f"Signed header missing: {missing[0]}", 400)
    amz_date = request.headers["x-amz-date"]
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return _denied("IncompleteSignatureException", f"Invalid X-Amz-Date: {amz_date!r}", 400)
    if match["date"] != amz_date[:8]:
        return _denied("InvalidSignatureException", "Credential date does not match X-Amz-Date.")
    now = datetime.datetime.now(datetime.UTC)
    if abs(now - when) > _SKEW:
        return _denied("InvalidSignatureException", f"Signature expired: {amz_date} is now "
                       "earlier than the allowed five minutes.")  # fmt: skip
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(request.body).hexdigest():
        return _denied("InvalidSignatureException", "The provided 'x-amz-content-sha256' header "
                       "does not match what was computed.", 400)  # fmt: skip
    if secret is not None:
        expected = _expected_signature(request, match, secret)
        if not hmac.compare_digest(expected, match["signature"]):
            return _denied("InvalidSignatureException", _MISMATCH)
    return None


def auth_error(request: HttpRequest, require_key: str | None) -> ErrorSpec | None:
    """The 403 (or 400) a Bedrock request's credentials earn, or ``None`` when they pass."""
    header = request.headers.get("authorization")
    if not header:
        return _denied("MissingAuthenticationTokenException", "Missing Authentication Token")
    if header.startswith("Bearer "):
        token = header[len("Bearer ") :].strip()
        if not token or (require_key is not None and token != require_key):
            return _denied("UnrecognizedClientException",
                           "The security token included in the request is invalid.")  # fmt: skip
        return None
    return _sigv4_error(request, header, require_key)
