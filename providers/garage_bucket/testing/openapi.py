"""Check admin-API traffic against Garage's official OpenAPI documents.

The documents are not shipped with the package: the repository holds verbatim
copies, with their provenance, in ``tests/reference/garage/``
(``garage-admin-v1.yml``, ``garage-admin-v2.json``); ``FEDIVERSITY_GARAGE_OPENAPI_DIR``
points elsewhere.

Where the documents are known to be wrong (checked against Garage's router),
:class:`Spec` applies these corrections and no others:

- v2 parameters marked ``in: path`` on paths without a template are query
  parameters; ``id`` is required on DeleteBucket, UpdateBucket, DeleteKey and
  UpdateKey, the others (alternative look-ups, ``showSecretKey``) are optional;
- v2 deletes answer 200 with body ``null``; v1 deletes (bucket and key) answer 204;
- deleting a non-empty bucket answers 409 ``BucketNotEmpty``;
- any operation may answer an error ``{"code", "message", "region", "path"}`` with
  400, 401, 403, 404, 409 or 5xx;
- v1 ``GET /v1/status`` (GetNodes) answers what Garage 1.x's handler builds,
  ``{node, garageVersion, garageFeatures, rustVersion, dbEngine, layoutVersion,
  nodes: [{id, role, addr, hostname, isUp, lastSeenSecsAgo, draining, …}]}``,
  not the document's ``knownNodes``/``layout`` (those are Garage 0.9's);
- v1 ``POST /v1/layout/revert`` (RevertLayout) does not read its body and answers
  200 with the layout (``ClusterLayout``), not an empty body.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from pathlib import Path
from typing import Any

from fediversity_providers.testing.reference import reference_path

__all__ = ["Spec", "SpecViolation", "reference_dir", "ENV"]

ENV = "FEDIVERSITY_GARAGE_OPENAPI_DIR"
FILES = {"v1": "garage-admin-v1.yml", "v2": "garage-admin-v2.json"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                   "region": {"type": "string"}, "path": {"type": "string"}},
}
_ID_REQUIRED = {"DeleteBucket", "UpdateBucket", "DeleteKey", "UpdateKey"}
_DELETES = {"DeleteBucket", "DeleteKey"}
_V1_ROLE = {"type": "object", "required": ["id", "zone", "capacity", "tags"],
            "properties": {"id": {"type": "string"}, "zone": {"type": "string"},
                           "capacity": {"type": "integer", "nullable": True, "minimum": 0},
                           "tags": {"type": "array", "items": {"type": "string"}}}}
_V1_SPACE = {"type": "object", "required": ["available", "total"],
             "properties": {"available": {"type": "integer"}, "total": {"type": "integer"}}}
#: answers Garage gives that its document describes wrongly (see the module's docstring)
_RESPONSE_ERRATA = {
    ("v1", "GetNodes"): {
        "type": "object",
        "required": ["node", "garageVersion", "rustVersion", "dbEngine", "layoutVersion", "nodes"],
        "properties": {
            "node": {"type": "string"}, "garageVersion": {"type": "string"},
            "garageFeatures": {"type": "array", "nullable": True, "items": {"type": "string"}},
            "rustVersion": {"type": "string"}, "dbEngine": {"type": "string"},
            "layoutVersion": {"type": "integer", "minimum": 0},
            "nodes": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["id", "role", "addr", "hostname", "isUp", "lastSeenSecsAgo", "draining"],
                "properties": {
                    "id": {"type": "string"}, "role": dict(_V1_ROLE, nullable=True),
                    "addr": {"type": "string", "nullable": True}, "hostname": {"type": "string", "nullable": True},
                    "isUp": {"type": "boolean"}, "lastSeenSecsAgo": {"type": "integer", "nullable": True},
                    "draining": {"type": "boolean"}, "dataPartition": _V1_SPACE, "metadataPartition": _V1_SPACE}}},
        },
    },
    ("v1", "RevertLayout"): {"$ref": "#/components/schemas/ClusterLayout"},
}


class SpecViolation(AssertionError):
    """A request or response that the official document does not allow."""


def reference_dir() -> Path:
    """Where the documents are: ``$FEDIVERSITY_GARAGE_OPENAPI_DIR``, else the repository's ``tests/reference/garage/``."""
    return reference_path("garage", env=ENV)


@functools.cache
def _load(version: str, directory: str) -> dict:
    path = Path(directory) / FILES[version]
    if not path.is_file():
        raise FileNotFoundError(
            f"Garage's admin API document {path} is missing: the garage tests check all traffic against it "
            f"(the repository keeps them in tests/reference/garage/; or point {ENV} at a folder holding them)")
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text)


class Spec:
    """One API version's document, with the corrections above."""

    def __init__(self, version: str, directory: Path | None = None) -> None:
        self.version = version
        self.doc = _load(version, str(directory or reference_dir()))
        from openapi_schema_validator import OAS30Validator, OAS31Validator

        self._validator_cls = OAS30Validator if version == "v1" else OAS31Validator
        self.prefix = "/v1" if version == "v1" else ""

    # -- finding the operation -------------------------------------------------------------
    def operation(self, method: str, path: str, query: dict[str, str]) -> tuple[str, dict, list[dict]]:
        """(operationId, operation object, parameters) for a request, or SpecViolation."""
        method = method.lower()
        if self.prefix and not path.startswith(self.prefix + "/"):
            raise SpecViolation(f"{method.upper()} {path}: not under {self.prefix}/")
        local = path[len(self.prefix):]
        candidates = []
        for key, item in self.doc["paths"].items():
            base, _, flag = key.partition("?")
            if base != local or method not in item:
                continue
            if flag and flag not in query:
                continue
            candidates.append((flag, item, item[method]))
        if not candidates:
            raise SpecViolation(f"{method.upper()} {path}: no such operation in the {self.version} document")
        candidates.sort(key=lambda c: not c[0])  # "?list" variants first when the flag is there
        flagged, item, op = candidates[0]
        params = [dict(p) for p in item.get("parameters", []) + op.get("parameters", [])]
        for p in params:
            if p.get("in") == "path" and "{" not in local:
                p["in"] = "query"
                p["required"] = op["operationId"] in _ID_REQUIRED and p["name"] == "id"
        if flagged:  # ``/key?list``: the flag is part of the path, with no value
            params.append({"name": flagged, "in": "query", "schema": {"type": "string", "maxLength": 0}})
        return op["operationId"], op, params

    # -- validating ----------------------------------------------------------------------------
    def _check(self, instance: Any, schema: dict, where: str) -> None:
        schema = dict(schema)
        schema.setdefault("components", self.doc.get("components", {}))
        validator = self._validator_cls(schema)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            at = "/".join(str(x) for x in e.absolute_path)
            raise SpecViolation(f"{where}{' at ' + at if at else ''}: {e.message}")

    def check_request(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> str:
        """Validate one request; its operationId."""
        url = urllib.parse.urlsplit(target)
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        query = dict(pairs)
        if len(query) != len(pairs):
            raise SpecViolation(f"{method} {target}: a query parameter is repeated")
        op_id, op, params = self.operation(method, url.path, query)
        where = f"{self.version} {op_id} request"
        known = {p["name"]: p for p in params if p.get("in") == "query"}
        for name in query:
            if name not in known:
                raise SpecViolation(f"{where}: query parameter {name!r} is not in the document")
        for name, p in known.items():
            if name not in query:
                if p.get("required"):
                    raise SpecViolation(f"{where}: required query parameter {name!r} is missing")
                continue
            schema = p.get("schema") or {}
            self._check(_coerce(query[name], schema), schema, f"{where} parameter {name}")
        auth = headers.get("authorization", "")
        security = op.get("security", self.doc.get("security"))
        if security != [{}] and not auth.startswith("Bearer "):
            raise SpecViolation(f"{where}: no bearer token")
        spec_body = op.get("requestBody")
        if spec_body is None:
            if body:
                raise SpecViolation(f"{where}: the operation takes no body")
            return op_id
        if not body:
            if spec_body.get("required"):
                raise SpecViolation(f"{where}: the body is required")
            return op_id
        if "json" not in headers.get("content-type", ""):
            raise SpecViolation(f"{where}: body is not declared as JSON")
        schema = spec_body["content"]["application/json"]["schema"]
        self._check(json.loads(body), schema, f"{where} body")
        return op_id

    def check_response(self, op_id: str, method: str, target: str, status: int, body: Any) -> None:
        """Validate one response (already decoded JSON, or None for no body)."""
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        _, op, _ = self.operation(method, url.path, query)
        where = f"{self.version} {op_id} response {status}"
        if status >= 400:
            self._check(body, ERROR_SCHEMA, where)
            if status not in (400, 401, 403, 404, 409) and status < 500:
                raise SpecViolation(f"{where}: unexpected error status")
            return
        if (self.version, op_id) in _RESPONSE_ERRATA:
            if status != 200:
                raise SpecViolation(f"{where}: status not 200")
            self._check(body, _RESPONSE_ERRATA[self.version, op_id], where)
            return
        if op_id in _DELETES:
            expected = 204 if self.version == "v1" else 200
            if status != expected or body is not None:
                raise SpecViolation(f"{where}: a {self.version} delete answers {expected} with no body (null)")
            return
        responses = op.get("responses", {})
        spec = responses.get(str(status))
        if spec is None:
            raise SpecViolation(f"{where}: status not in the document ({', '.join(responses)})")
        content = (spec.get("content") or {}).get("application/json")
        if content is None:
            if body is not None:
                raise SpecViolation(f"{where}: the document declares no body")
            return
        self._check(body, content["schema"], where)


def _coerce(value: str, schema: dict) -> Any:
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "boolean" in types and value in ("true", "false"):
        return value == "true"
    if "integer" in types:
        try:
            return int(value)
        except ValueError:
            return value
    return value
