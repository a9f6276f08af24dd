"""S3 XML documents: building responses and parsing the two request bodies we accept."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from . import errors

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'


def iso8601(ts: float) -> str:
    """S3's XML timestamp format: 2024-02-02T11:04:41.030Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def http_date(ts: float) -> str:
    """RFC 7231 date, as in Last-Modified."""
    return datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def element(name: str, value: object) -> str:
    """`<name>value</name>` with the value escaped."""
    return f"<{name}>{escape(str(value))}</{name}>"


def document(root: str, body: str) -> bytes:
    """A complete XML document with S3's namespace on the root element."""
    return f'{HEADER}<{root} xmlns="{NS}">{body}</{root}>'.encode()


def error_document(err: errors.S3Error, request_id: str) -> bytes:
    """The `<Error>` body of an error response."""
    body = element("Code", err.code) + element("Message", err.message)
    for name, value in err.extra.items():
        body += element(name, value)
    body += element("Resource", err.resource) + element("RequestId", request_id)
    return f"{HEADER}<Error>{body}</Error>".encode()


def parse(body: bytes) -> ET.Element:
    """Parse a small request document, namespaces stripped. Raises MalformedXML.

    Bodies are size-capped by the caller and DTDs are refused outright, so entity expansion
    attacks (the reason for defusedxml) cannot reach the parser.
    """
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise errors.MalformedXML()
    try:
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError:
        raise errors.MalformedXML() from None
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) pairs of a CompleteMultipartUpload body, in document order."""
    root = parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    out = []
    for part in root.findall("Part"):
        number = part.findtext("PartNumber")
        etag = part.findtext("ETag")
        if number is None or etag is None:
            raise errors.MalformedXML()
        try:
            out.append((int(number), etag))
        except ValueError:
            raise errors.MalformedXML() from None
    return out


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """(keys, quiet) of a DeleteObjects body."""
    root = parse(body)
    if root.tag != "Delete":
        raise errors.MalformedXML()
    keys = []
    for obj in root.findall("Object"):
        key = obj.findtext("Key")
        if key is None:
            raise errors.MalformedXML()
        keys.append(key)
    if len(keys) > 1000:
        raise errors.MalformedXML()
    quiet = (root.findtext("Quiet") or "false").strip().lower() == "true"
    return keys, quiet
