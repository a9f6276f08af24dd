"""AWS Signature Version 4 verification, for the `Authorization` header and presigned URLs.

https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html

S3 signs the path exactly as sent (no double encoding, no dot-segment normalisation), so the
canonical URI is the request's raw path. Signatures are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import quote, unquote

from . import errors

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Header-signed requests more than this far from our clock are refused (S3: 15 minutes).
MAX_SKEW = timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 604_800


@dataclass
class AuthResult:
    """What a verified request proved: who signed it and what it says about its payload."""

    access_key_id: str
    #: The x-amz-content-sha256 value the signature covers (hex digest, UNSIGNED-PAYLOAD, or a
    #: STREAMING-* marker).
    payload_hash: str
    presigned: bool
    #: For STREAMING-AWS4-HMAC-SHA256-PAYLOAD: what chunk signatures are chained from.
    seed_signature: str = ""
    signing_key: bytes = b""
    amz_date: str = ""
    scope: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived SigV4 key; cached, it changes once a day per credential and region."""
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    return hmac.new(k, b"aws4_request", hashlib.sha256).digest()


def _uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_query(raw_query: str, *, exclude: str | None = None) -> str:
    """Canonical query string: each name and value URI-encoded, sorted by name then value."""
    pairs: list[tuple[str, str]] = []
    if raw_query:
        for item in raw_query.split("&"):
            if not item:
                continue
            name, _, value = item.partition("=")
            name = unquote(name)
            if exclude is not None and name == exclude:
                continue
            pairs.append((_uri_encode(name), _uri_encode(unquote(value))))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def _canonical_header_value(values: list[str]) -> str:
    return ",".join(" ".join(v.split()) for v in values)


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, list[str]],
    signed_headers: list[str],
    payload_hash: str,
    *,
    exclude_query: str | None = None,
) -> str:
    """The canonical request string of SigV4 (see the module docstring for S3's path rule)."""
    lines = [method, raw_path or "/", canonical_query(raw_query, exclude=exclude_query)]
    for name in signed_headers:
        lines.append(f"{name}:{_canonical_header_value(headers.get(name, []))}")
    lines.append("")
    lines.append(";".join(signed_headers))
    lines.append(payload_hash)
    return "\n".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """The SigV4 string to sign for one canonical request."""
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _parse_date(value: str, error: type[errors.S3Error]) -> datetime:
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise error(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        ) from None


def _parse_credential(
    credential: str, credentials: dict[str, str], amz_date: str, error: type[errors.S3Error]
) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise error(f"Error parsing the Credential parameter: {credential!r}")
    access_key_id, date, region, service, _ = parts
    if service != "s3":
        raise error(f"The credential scope names service {service!r}; expecting 's3'")
    if date != amz_date[:8]:
        raise error(f"The credential scope date {date!r} does not match X-Amz-Date")
    if access_key_id not in credentials:
        raise errors.InvalidAccessKeyId()
    # Any region is accepted: the signature covers it, and a store on one machine has one region
    # whatever the client's default is.
    return access_key_id, date, region, service


def verify(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    query: dict[str, str],
    headers: dict[str, list[str]],
    credentials: dict[str, str],
    now: datetime | None = None,
) -> AuthResult:
    """Check a request's SigV4 signature (header or presigned query); return what it proves.

    Raises `AccessDenied` for an anonymous or expired request, `InvalidAccessKeyId`,
    `SignatureDoesNotMatch`, `RequestTimeTooSkewed`, or a 400 for malformed auth parameters.
    The payload hash itself is checked later, against the streamed body.
    """
    now = now or datetime.now(UTC)
    auth = headers.get("authorization", [""])[0]
    if auth:
        return _verify_header(method, raw_path, raw_query, headers, credentials, auth, now)
    if "X-Amz-Signature" in query or "X-Amz-Algorithm" in query:
        return _verify_query(method, raw_path, raw_query, query, headers, credentials, now)
    if "Signature" in query and "AWSAccessKeyId" in query:
        raise errors.AccessDenied(
            "Signature Version 2 presigned URLs are not supported; use SigV4."
        )
    raise errors.AccessDenied("Anonymous access is not allowed; sign the request with SigV4.")


def _verify_header(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, list[str]],
    credentials: dict[str, str],
    auth: str,
    now: datetime,
) -> AuthResult:
    bad = errors.AuthorizationHeaderMalformed
    if not auth.startswith(ALGORITHM + " "):
        if auth.startswith("AWS "):
            raise errors.InvalidRequest("Signature Version 2 is not supported; use SigV4.")
        raise bad(f"Unsupported authorization type; expecting {ALGORITHM}")
    fields: dict[str, str] = {}
    for item in auth[len(ALGORITHM) + 1 :].split(","):
        name, _, value = item.strip().partition("=")
        fields[name] = value
    try:
        credential = fields["Credential"]
        signed_headers = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except KeyError:
        raise bad(
            "The authorization header is malformed; missing Credential, SignedHeaders or Signature."
        ) from None
    amz_date = (headers.get("x-amz-date") or [""])[0]
    if not amz_date:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    when = _parse_date(amz_date, errors.AccessDenied)
    if abs(now - when) > MAX_SKEW:
        raise errors.RequestTimeTooSkewed(
            RequestTime=amz_date, ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    access_key_id, date, region, service = _parse_credential(credential, credentials, amz_date, bad)
    if "host" not in signed_headers:
        raise bad("The host header must be signed.")
    payload_hash = (headers.get("x-amz-content-sha256") or [""])[0]
    if not payload_hash:
        raise errors.InvalidRequest(
            "Missing required header for this request: x-amz-content-sha256"
        )
    if not _is_payload_hash(payload_hash):
        raise errors.InvalidArgument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-... or a SHA256 value."
        )
    canonical = canonical_request(
        method, raw_path, raw_query, headers, signed_headers, payload_hash
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    key = signing_key(credentials[access_key_id], date, region, service)
    sts = string_to_sign(amz_date, scope, canonical)
    expected = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise errors.SignatureDoesNotMatch(AWSAccessKeyId=access_key_id, StringToSign=sts)
    return AuthResult(
        access_key_id=access_key_id,
        payload_hash=payload_hash,
        presigned=False,
        seed_signature=signature,
        signing_key=key,
        amz_date=amz_date,
        scope=scope,
    )


def _is_payload_hash(value: str) -> bool:
    if value in (
        UNSIGNED_PAYLOAD,
        STREAMING_UNSIGNED_TRAILER,
        STREAMING_SIGNED,
        STREAMING_SIGNED_TRAILER,
    ):
        return True
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _verify_query(
    method: str,
    raw_path: str,
    raw_query: str,
    query: dict[str, str],
    headers: dict[str, list[str]],
    credentials: dict[str, str],
    now: datetime,
) -> AuthResult:
    bad = errors.AuthorizationQueryParametersError
    try:
        algorithm = query["X-Amz-Algorithm"]
        credential = query["X-Amz-Credential"]
        amz_date = query["X-Amz-Date"]
        expires_raw = query["X-Amz-Expires"]
        signed_headers = query["X-Amz-SignedHeaders"].split(";")
        signature = query["X-Amz-Signature"]
    except KeyError as exc:
        raise bad(f"Query-string authentication requires the {exc.args[0]} parameter") from None
    if algorithm != ALGORITHM:
        raise bad(f"X-Amz-Algorithm only supports {ALGORITHM!r}")
    try:
        expires = int(expires_raw)
    except ValueError:
        raise errors.AccessDenied("X-Amz-Expires should be a number") from None
    if expires < 1:
        raise errors.AccessDenied("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_EXPIRES:
        raise errors.AccessDenied(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800"
        )
    when = _parse_date(amz_date, errors.AccessDenied)
    access_key_id, date, region, service = _parse_credential(credential, credentials, amz_date, bad)
    if "host" not in signed_headers:
        raise bad("The host header must be signed.")
    # A presigned URL may carry X-Amz-Content-Sha256 as a signed header; otherwise the payload
    # is unsigned (botocore's presigner and ours never sign it).
    payload_hash = UNSIGNED_PAYLOAD
    if "x-amz-content-sha256" in signed_headers:
        payload_hash = (headers.get("x-amz-content-sha256") or [UNSIGNED_PAYLOAD])[0]
    elif "X-Amz-Content-Sha256" in query:
        payload_hash = query["X-Amz-Content-Sha256"]
    canonical = canonical_request(
        method,
        raw_path,
        raw_query,
        headers,
        signed_headers,
        payload_hash,
        exclude_query="X-Amz-Signature",
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    key = signing_key(credentials[access_key_id], date, region, service)
    sts = string_to_sign(amz_date, scope, canonical)
    expected = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise errors.SignatureDoesNotMatch(AWSAccessKeyId=access_key_id, StringToSign=sts)
    # Expiry is checked after the signature, as S3 does: a forged URL learns nothing about time.
    if now > when + timedelta(seconds=expires):
        raise errors.AccessDenied(
            "Request has expired",
            Expires=(when + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    if when - now > MAX_SKEW:
        raise errors.AccessDenied("Request is not valid yet")
    if not _is_payload_hash(payload_hash):
        raise errors.InvalidArgument("X-Amz-Content-Sha256 is not valid")
    return AuthResult(
        access_key_id=access_key_id,
        payload_hash=payload_hash,
        presigned=True,
        seed_signature=signature,
        signing_key=key,
        amz_date=amz_date,
        scope=scope,
    )


def chunk_signature(
    key: bytes, amz_date: str, scope: str, previous: str, chunk_sha256_hex: str
) -> str:
    """Signature of one STREAMING-AWS4-HMAC-SHA256-PAYLOAD chunk, chained from `previous`."""
    sts = "\n".join(
        ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256, chunk_sha256_hex]
    )
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def trailer_signature(key: bytes, amz_date: str, scope: str, previous: str, trailer: bytes) -> str:
    """Signature of the trailing headers of a STREAMING-...-PAYLOAD-TRAILER body."""
    sts = "\n".join(
        ["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous, hashlib.sha256(trailer).hexdigest()]
    )
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
