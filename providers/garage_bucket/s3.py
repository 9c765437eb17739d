"""What only S3 offers on Garage: CORS, lifecycle, and emptying a bucket.

Goes through the minio client.  minio-py has no CORS method, so CORS (and, for
one code path, lifecycle too) is sent as a signed request through the client's
own request path (``Minio._execute``), with the ``Content-MD5`` header S3
requires on these PUTs.  Garage answers 204 with an empty body when nothing is
configured; S3 servers that answer ``NoSuchCORSConfiguration`` /
``NoSuchLifecycleConfiguration`` read as nothing configured too.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

from fediversity_providers.core.errors import ProviderError, Transient, Unreachable

__all__ = ["S3", "cors_xml", "parse_cors", "lifecycle_xml", "parse_lifecycle"]

# The provider imports this module only when it sends an S3 request.

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_EMPTY = {"NoSuchCORSConfiguration", "NoSuchLifecycleConfiguration"}


def _el(parent: ET.Element, tag: str, text: Any = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def cors_xml(rules: list[dict]) -> bytes:
    root = ET.Element("CORSConfiguration", xmlns=NS)
    for rule in rules:
        r = _el(root, "CORSRule")
        if rule.get("id"):
            _el(r, "ID", rule["id"])
        for origin in rule["allowedOrigins"]:
            _el(r, "AllowedOrigin", origin)
        for method in rule["allowedMethods"]:
            _el(r, "AllowedMethod", method)
        for header in rule.get("allowedHeaders") or []:
            _el(r, "AllowedHeader", header)
        for header in rule.get("exposeHeaders") or []:
            _el(r, "ExposeHeader", header)
        if rule.get("maxAgeSeconds") is not None:
            _el(r, "MaxAgeSeconds", rule["maxAgeSeconds"])
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _strip(c.tag) == name]


def _text(el: ET.Element, name: str) -> str | None:
    found = _children(el, name)
    return (found[0].text or "") if found else None


def parse_cors(data: bytes) -> list[dict]:
    if not data.strip():
        return []
    rules = []
    for r in _children(ET.fromstring(data), "CORSRule"):
        max_age = _text(r, "MaxAgeSeconds")
        rules.append({
            "id": _text(r, "ID") or None,
            "allowedOrigins": [c.text or "" for c in _children(r, "AllowedOrigin")],
            "allowedMethods": [c.text or "" for c in _children(r, "AllowedMethod")],
            "allowedHeaders": [c.text or "" for c in _children(r, "AllowedHeader")],
            "exposeHeaders": [c.text or "" for c in _children(r, "ExposeHeader")],
            "maxAgeSeconds": int(max_age) if max_age not in (None, "") else None,
        })
    return rules


def lifecycle_xml(rules: list[dict]) -> bytes:
    root = ET.Element("LifecycleConfiguration", xmlns=NS)
    for rule in rules:
        r = _el(root, "Rule")
        _el(r, "ID", rule["id"])
        _el(_el(r, "Filter"), "Prefix", rule.get("prefix") or "")
        _el(r, "Status", "Enabled" if rule.get("enabled", True) else "Disabled")
        if rule.get("expirationDays") is not None:
            _el(_el(r, "Expiration"), "Days", rule["expirationDays"])
        if rule.get("abortIncompleteMultipartUploadDays") is not None:
            _el(_el(r, "AbortIncompleteMultipartUpload"), "DaysAfterInitiation",
                rule["abortIncompleteMultipartUploadDays"])
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def parse_lifecycle(data: bytes) -> list[dict]:
    if not data.strip():
        return []
    rules = []
    for r in _children(ET.fromstring(data), "Rule"):
        prefix = _text(r, "Prefix")
        for f in _children(r, "Filter"):
            prefix = _text(f, "Prefix") if _text(f, "Prefix") is not None else prefix
            for a in _children(f, "And"):
                prefix = _text(a, "Prefix") or prefix
        days = abort = None
        for e in _children(r, "Expiration"):
            days = _text(e, "Days")
        for a in _children(r, "AbortIncompleteMultipartUpload"):
            abort = _text(a, "DaysAfterInitiation")
        rules.append({
            "id": _text(r, "ID") or "",
            "enabled": (_text(r, "Status") or "Enabled") == "Enabled",
            "prefix": prefix or "",
            "expirationDays": int(days) if days else None,
            "abortIncompleteMultipartUploadDays": int(abort) if abort else None,
        })
    return rules


class S3:
    """One bucket over S3 with one key's credentials (minio imported here, on first use)."""

    def __init__(self, endpoint: str, region: str, access_key: str, secret_key: str) -> None:
        from minio import Minio  # heavy: only when a request needs S3

        url = urllib.parse.urlsplit(endpoint)
        self.client = Minio(url.netloc, access_key=access_key, secret_key=secret_key,
                            secure=url.scheme == "https", region=region)
        self.endpoint = endpoint

    def _do(self, what: str, func, *args, **kwargs):
        from minio.error import S3Error
        import urllib3.exceptions

        try:
            return func(*args, **kwargs)
        except S3Error as exc:
            if exc.code in _EMPTY:
                return None
            error: ProviderError = ProviderError(f"S3 {what} failed: {exc.code}: {exc.message}")
            if exc.code in ("SlowDown", "InternalError", "ServiceUnavailable"):
                error = Transient(f"S3 {what} failed: {exc.code}: {exc.message}")
            raise error from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"S3 {what} at {self.endpoint} failed: {type(exc).__name__}",
                              hint="check s3Endpoint and that Garage is running") from exc

    def _put(self, bucket: str, sub: str, body: bytes) -> None:
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        self._do(f"Put{sub.title()}", self.client._execute, "PUT", bucket, body=body,
                 query_params={sub: ""}, headers={"Content-MD5": md5, "Content-Type": "application/xml"})

    def _get(self, bucket: str, sub: str) -> bytes:
        response = self._do(f"Get{sub.title()}", self.client._execute, "GET", bucket, query_params={sub: ""})
        return b"" if response is None else response.data

    def _delete(self, bucket: str, sub: str) -> None:
        self._do(f"Delete{sub.title()}", self.client._execute, "DELETE", bucket, query_params={sub: ""})

    def get_cors(self, bucket: str) -> list[dict]:
        return parse_cors(self._get(bucket, "cors"))

    def set_cors(self, bucket: str, rules: list[dict]) -> None:
        if rules:
            self._put(bucket, "cors", cors_xml(rules))
        else:
            self._delete(bucket, "cors")

    def get_lifecycle(self, bucket: str) -> list[dict]:
        return parse_lifecycle(self._get(bucket, "lifecycle"))

    def set_lifecycle(self, bucket: str, rules: list[dict]) -> None:
        if rules:
            self._put(bucket, "lifecycle", lifecycle_xml(rules))
        else:
            self._delete(bucket, "lifecycle")

    def empty(self, bucket: str) -> int:
        """Abort every unfinished multipart upload and delete every object; how many went."""
        from minio.deleteobjects import DeleteObject

        gone = 0
        while True:
            uploads = self._do("ListMultipartUploads", self.client._list_multipart_uploads, bucket)
            batch = list(uploads.uploads) if uploads is not None else []
            for upload in batch:
                self._do("AbortMultipartUpload", self.client._abort_multipart_upload,
                         bucket, upload.object_name, upload.upload_id)
                gone += 1
            if not batch or not uploads.is_truncated:
                break
        while True:
            names = [DeleteObject(o.object_name) for o in
                     self._do("ListObjects", lambda: list(self.client.list_objects(bucket, recursive=True)))]
            if not names:
                return gone
            for start in range(0, len(names), 1000):
                errors = self._do("DeleteObjects", lambda: list(
                    self.client.remove_objects(bucket, iter(names[start:start + 1000]))))
                if errors:
                    raise ProviderError(f"S3 DeleteObjects left {len(errors)} objects: {errors[0].message}")
            gone += len(names)
