"""Our own SigV4 query-string presigner for S3, byte-identical to botocore's and much faster.

Why not botocore's `generate_presigned_url`: it costs about 360 µs per URL (it walks the whole
request-serialisation and event machinery for every URL), so the 10,000 part URLs of one large
file would take 3.6 s. Here everything that one batch of URLs shares is computed once — the
signing key (cached per day), the credential scope, the canonical-request prefix and suffix, the
string-to-sign prefix and the URL prefix — and each URL costs one SHA-256, one HMAC-SHA256 and a
few string joins (a few µs).

What "byte-identical" means: for the same endpoint URL, region, credentials, expiry and instant,
the URL returned here equals what botocore returns for an s3v4, path-style client, e.g.
`client.generate_presigned_url("upload_part", Params={...}, ExpiresIn=...)`. That pins down
details the SigV4 documentation leaves open, all checked in `tests/unit/test_presign.py`:

* the path is `{endpoint path}/{bucket}/{key}`, the key percent-encoded once (UTF-8) with `/`
  and the unreserved characters `A-Z a-z 0-9 - _ . ~` kept; S3 does not normalise or
  double-encode it (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html);
* query values are encoded with the same unreserved set (so `/` in `X-Amz-Credential` is `%2F`,
  a space is `%20`, never `+`);
* the emitted query order is botocore's — operation parameters first (`uploadId` then
  `partNumber`; `response-content-disposition`), then `X-Amz-Algorithm`, `X-Amz-Credential`,
  `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Security-Token` and finally
  `X-Amz-Signature` — while the canonical query string that is signed is sorted by code point;
* the signed `host` header is the lower-cased host name plus `:port` unless the port is the
  scheme's default (80 for http, 443 for https); the URL itself keeps the netloc as configured.

Only `host` is signed and the payload is `UNSIGNED-PAYLOAD`, so the client may send any body and
any other headers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

__all__ = [
    "SIGV4_MAX_EXPIRES",
    "SigV4Presigner",
    "content_disposition",
    "sigv4_signing_key",
]

#: SigV4 presigned URLs live at most seven days.
SIGV4_MAX_EXPIRES = 604_800
#: S3 part numbers are 1..10,000.
_MAX_PART_NUMBER = 10_000

_ALGORITHM = "AWS4-HMAC-SHA256"
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_sha256 = hashlib.sha256
_hmac_new = hmac.new


# `urllib.parse.quote` walks every character in Python (3-4 µs for a typical key); a regex that
# only visits the runs needing escapes gives the same bytes several times faster.
_PCT = [f"%{b:02X}" for b in range(256)]
_QUERY_UNSAFE = re.compile(r"[^A-Za-z0-9_.~-]+")
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9_.~/-]+")


def _escape(match: re.Match[str]) -> str:
    return "".join([_PCT[b] for b in match.group().encode()])


def _q(value: str) -> str:
    """Percent-encode a query key or value exactly like botocore's `percent_encode`
    (`quote(value, safe="-_.~")`: UTF-8, unreserved characters kept, `/` and space escaped)."""
    return _QUERY_UNSAFE.sub(_escape, value)


def _quote_key(key: str) -> str:
    """Percent-encode an object key for the path, like botocore's greedy `{Key+}` label
    (`quote(key, safe="/~")`)."""
    return _PATH_UNSAFE.sub(_escape, key)


def sigv4_signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for one day (`date` is `YYYYMMDD`), region and service."""
    k = _hmac_new(("AWS4" + secret_access_key).encode(), date.encode(), _sha256).digest()
    k = _hmac_new(k, region.encode(), _sha256).digest()
    k = _hmac_new(k, service.encode(), _sha256).digest()
    return _hmac_new(k, b"aws4_request", _sha256).digest()


def content_disposition(filename: str) -> str:
    """A `Content-Disposition: attachment` value naming `filename` (RFC 6266).

    ASCII names go in a quoted `filename=` (with `"` and `\\` escaped); other names also get an
    RFC 5987 `filename*=UTF-8''...` form and an ASCII fallback (non-ASCII replaced by `_`), so the
    header S3 sends back stays pure ASCII.
    """
    fallback = (
        "".join(c if 0x20 <= ord(c) < 0x7F else "_" for c in filename)
        .replace("\\", "\\\\")
        .replace('"', '\\"')
    )
    value = f'attachment; filename="{fallback}"'
    if not filename.isascii() or fallback != filename:
        value += "; filename*=UTF-8''" + quote(filename, safe="!#$&+-.^_`|~")
    return value


class SigV4Presigner:
    """Presigns path-style S3 URLs on one endpoint with one set of credentials.

    `base_url` is `scheme://host[:port][/prefix]`, the address clients will use (the public URL,
    not necessarily the one the server talks to). Thread-safe; cheap to keep for the process.
    Every method takes `now` (aware, or naive meaning UTC) so tests can freeze the clock;
    by default the current time is used.
    """

    __slots__ = (
        "_access_key_id",
        "_base",
        "_host",
        "_keys",
        "_last",
        "_path_prefix",
        "_region",
        "_secret_access_key",
        "_service",
        "_session_token",
    )

    def __init__(
        self,
        base_url: str,
        *,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None = None,
        service: str = "s3",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"presign base URL must be http(s)://host[:port], not {base_url!r}")
        if parts.query or parts.fragment:
            raise ValueError("presign base URL must not have a query or fragment")
        host = parts.hostname  # lower-cased by urlsplit
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        port = parts.port
        if port is not None and port != {"http": 80, "https": 443}[parts.scheme]:
            host = f"{host}:{port}"
        self._host = host
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._path_prefix = parts.path.rstrip("/")
        self._region = region
        self._service = service
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._session_token = session_token
        self._keys: dict[str, bytes] = {}
        self._last: tuple[int, int, tuple[str, str, str, str]] = (-1, 0, ("", "", "", ""))

    @property
    def base_url(self) -> str:
        """The `scheme://netloc[/prefix]` every URL starts with."""
        return self._base + self._path_prefix

    def signing_key(self, date: str) -> bytes:
        """The signing key for `date` (`YYYYMMDD`), derived once per day and cached."""
        key = self._keys.get(date)
        if key is None:
            key = sigv4_signing_key(self._secret_access_key, date, self._region, self._service)
            if len(self._keys) >= 4:  # a few days at most: dates only move forward
                self._keys.clear()
            self._keys[date] = key
        return key

    # -- one URL ----------------------------------------------------------------------------

    def presign_put(
        self, bucket: str, key: str, expires: int, *, now: datetime | None = None
    ) -> str:
        """A presigned PutObject URL for `bucket`/`key`, valid `expires` seconds."""
        return self._presign("PUT", bucket, key, (), expires, now)

    def presign_get(
        self,
        bucket: str,
        key: str,
        expires: int,
        *,
        response_content_disposition: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """A presigned GetObject URL, optionally overriding the response's Content-Disposition."""
        params: tuple[tuple[str, str], ...] = ()
        if response_content_disposition is not None:
            params = (("response-content-disposition", response_content_disposition),)
        return self._presign("GET", bucket, key, params, expires, now)

    def presign_upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        expires: int,
        *,
        now: datetime | None = None,
    ) -> str:
        """A presigned UploadPart URL for one part."""
        return self.presign_upload_parts(bucket, key, upload_id, (part_number,), expires, now=now)[
            0
        ]

    # -- many parts of one upload -----------------------------------------------------------

    def presign_upload_parts(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_numbers: Iterable[int],
        expires: int,
        *,
        now: datetime | None = None,
    ) -> list[str]:
        """Presigned UploadPart URLs, one per part number, in the order given.

        All URLs of a batch share one timestamp. Everything but `partNumber` is computed once,
        so each URL costs one SHA-256 and one HMAC.
        """
        numbers = part_numbers if isinstance(part_numbers, Sequence) else list(part_numbers)
        if not numbers:
            return []
        for n in (min(numbers), max(numbers)):
            if type(n) is not int or not 1 <= n <= _MAX_PART_NUMBER:  # bool is not a part number
                raise ValueError(f"part numbers must be integers 1..{_MAX_PART_NUMBER}, got {n!r}")
        amz_date, scope, auth_canonical, auth_emitted = self._auth(expires, now)
        path = f"{self._path_prefix}/{_q(bucket)}/{_quote_key(key)}"
        upload_q = _q(upload_id)
        # Canonical query: X-Amz-* < partNumber < uploadId (sorted by code point).
        cr_prefix = f"PUT\n{path}\n{auth_canonical}&partNumber="
        cr_suffix = f"&uploadId={upload_q}\nhost:{self._host}\n\nhost\n{_UNSIGNED_PAYLOAD}"
        sts_prefix = f"{_ALGORITHM}\n{amz_date}\n{scope}\n".encode()
        # Emitted query: botocore's order, operation params first.
        url_prefix = f"{self._base}{path}?uploadId={upload_q}&partNumber="
        url_middle = f"&{auth_emitted}&X-Amz-Signature="
        signing = _hmac_new(self.signing_key(amz_date[:8]), digestmod=_sha256)
        sha256 = _sha256
        urls: list[str] = []
        append = urls.append
        for n in numbers:
            s = str(n)
            digest = sha256(f"{cr_prefix}{s}{cr_suffix}".encode()).hexdigest()
            mac = signing.copy()
            mac.update(sts_prefix + digest.encode())
            append(f"{url_prefix}{s}{url_middle}{mac.hexdigest()}")
        return urls

    # -- internals --------------------------------------------------------------------------

    def _auth(self, expires: int, now: datetime | None) -> tuple[str, str, str, str]:
        """(X-Amz-Date, credential scope, canonical auth query, emitted auth query).

        On the live clock the answer is reused within the same second (one-entry cache), which
        saves formatting and encoding on every single-URL call.
        """
        if type(expires) is not int or not 1 <= expires <= SIGV4_MAX_EXPIRES:
            raise ValueError(f"expires must be an integer 1..{SIGV4_MAX_EXPIRES}, got {expires!r}")
        if now is not None:
            if now.tzinfo is not None:
                now = now.astimezone(UTC)
            return self._auth_at(now.strftime("%Y%m%dT%H%M%SZ"), expires)
        second = int(time.time())
        last = self._last
        if last[0] == second and last[1] == expires:
            return last[2]
        auth = self._auth_at(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second)), expires)
        self._last = (second, expires, auth)  # one tuple assignment: safe across threads
        return auth

    def _auth_at(self, amz_date: str, expires: int) -> tuple[str, str, str, str]:
        scope = f"{amz_date[:8]}/{self._region}/{self._service}/aws4_request"
        head = (
            f"X-Amz-Algorithm={_ALGORITHM}"
            f"&X-Amz-Credential={_q(self._access_key_id + '/' + scope)}"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={expires}"
        )
        if self._session_token is None:
            signed = f"{head}&X-Amz-SignedHeaders=host"
            return amz_date, scope, signed, signed
        token = f"X-Amz-Security-Token={_q(self._session_token)}"
        return (
            amz_date,
            scope,
            f"{head}&{token}&X-Amz-SignedHeaders=host",
            f"{head}&X-Amz-SignedHeaders=host&{token}",
        )

    def _presign(
        self,
        method: str,
        bucket: str,
        key: str,
        params: Sequence[tuple[str, str]],
        expires: int,
        now: datetime | None,
    ) -> str:
        amz_date, scope, auth_canonical, auth_emitted = self._auth(expires, now)
        path = f"{self._path_prefix}/{_q(bucket)}/{_quote_key(key)}"
        encoded = [f"{_q(k)}={_q(v)}" for k, v in params]
        # Operation parameters are lower-case, so they sort after every X-Amz-* parameter;
        # their names differ, so sorting `name=value` strings sorts by name as SigV4 wants.
        canonical_query = "&".join([auth_canonical, *sorted(encoded)])
        canonical_request = (
            f"{method}\n{path}\n{canonical_query}\nhost:{self._host}\n\nhost\n{_UNSIGNED_PAYLOAD}"
        )
        string_to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{scope}\n{_sha256(canonical_request.encode()).hexdigest()}"
        )
        signature = _hmac_new(
            self.signing_key(amz_date[:8]), string_to_sign.encode(), _sha256
        ).hexdigest()
        emitted = "".join([f"{kv}&" for kv in encoded])
        return f"{self._base}{path}?{emitted}{auth_emitted}&X-Amz-Signature={signature}"
