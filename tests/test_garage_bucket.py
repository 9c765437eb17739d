"""garage_bucket against an emulated Garage (v1 and v2) and a real S3 server (moto) on loopback.

With GARAGE_BIN set, the tests that need no fault switch run against a real Garage too.
The ``garage`` fixture fails a test whose admin-API traffic leaves Garage's official documents.
"""

from __future__ import annotations

import io
import secrets

import pytest

from fediversity_providers import AccessDenied, Conflict, InvalidInput, NotFound, Transient
from fediversity_providers.core.client import ProviderProcess
from fediversity_providers.testing import InProcessDriver, SubprocessDriver, conformance

T = "garage_bucket"

OPS = {  # the operation names of the two documents
    "GetBucketInfo": {"v1": "GetBucketInfo", "v2": "GetBucketInfo"},
    "ListKeys": {"v1": "ListKeys", "v2": "ListKeys"},
    "CreateKey": {"v1": "AddKey", "v2": "CreateKey"},
    "GetKeyInfo": {"v1": "GetKey", "v2": "GetKeyInfo"},
    "CreateBucket": {"v1": "CreateBucket", "v2": "CreateBucket"},
    "AllowBucketKey": {"v1": "AllowBucketKey", "v2": "AllowBucketKey"},
    "DeleteBucket": {"v1": "DeleteBucket", "v2": "DeleteBucket"},
    "DeleteKey": {"v1": "DeleteKey", "v2": "DeleteKey"},
}


def alias() -> str:
    return f"media-{secrets.token_hex(4)}"


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


def put_object(garage, outputs, name="app", key="a/b.txt", data=b"hello"):
    creds = outputs["keys"][name]
    garage.s3(creds["accessKeyId"], creds["secretAccessKey"]).put_object(
        outputs["globalAlias"], key, io.BytesIO(data), len(data))


# -- the lifecycle ------------------------------------------------------------------------------
def test_conformance(garage, driver):
    name = alias()
    inputs = garage.inputs(name, keys=[{"name": "app", "write": True}])
    updated = garage.inputs(name + "-renamed",
                            keys=[{"name": "app", "write": True, "owner": True}, {"name": "reader"}],
                            quotas={"maxSize": 10_000_000, "maxObjects": 0},
                            website={"enable": True, "rootDomain": ".web.garage.localhost"},
                            cors=[{"allowedOrigins": ["https://social.example"], "allowedMethods": ["GET", "HEAD"]}],
                            lifecycle=[{"id": "uploads", "abortIncompleteMultipartUploadDays": 1}])
    steps = conformance.check(driver, T, inputs, updated)
    assert steps[-1] == "read after delete says not found"
    assert garage.bucket_ids() == set() and garage.key_ids() == set()


def test_conformance_over_the_wire(garage):
    """The same lifecycle through a real provider process speaking the protocol."""
    driver = SubprocessDriver()
    try:
        name = alias()
        conformance.check(driver, T, garage.inputs(name, keys=[{"name": "app"}]),
                          garage.inputs(name, keys=[{"name": "app", "write": True}], quotas={"maxObjects": 5}))
    finally:
        assert driver.close() == 0
    assert garage.bucket_ids() == set() and garage.key_ids() == set()


def test_invalid_inputs_are_refused(tmp_path):
    valid = {"adminEndpoint": "http://127.0.0.1:9", "adminTokenFile": str(tmp_path / "t"),
             "s3Endpoint": "http://127.0.0.1:9", "globalAlias": "media"}
    assert conformance.check_invalid_inputs(InProcessDriver(), T, valid, max_examples=25) > 0


@pytest.mark.parametrize("bad", ["192.168.1.1", "my..bucket", "xn--bucket", "a-.b", "UPPER", "ab"])
def test_bucket_names_checked_before_any_request(garage, driver, bad):
    with pytest.raises(InvalidInput, match="globalAlias"):
        driver.create(T, garage.inputs(bad))
    if garage.emulator is not None:
        assert garage.emulator.requests == []


def test_request_counts_are_minimal(garage, driver):
    emu = garage.require_emulator()
    inputs = garage.inputs(alias(), keys=[{"name": "app", "write": True}])
    outputs = driver.create(T, inputs)
    assert emu.count() <= 5, emu.operations()
    emu.reset_counts()
    driver.read(T, inputs, outputs)
    assert emu.count() == 1
    emu.reset_counts()
    assert driver.update(T, inputs, outputs, inputs) == outputs
    assert emu.count() == 1, emu.operations()
    emu.reset_counts()
    driver.update(T, inputs, outputs, dict(inputs, quotas={"maxSize": 1, "maxObjects": 2},
                                           website={"enable": True}))
    assert emu.count() == 2, emu.operations()  # read, and one UpdateBucket for quotas and website
    emu.reset_counts()
    driver.delete(T, inputs, outputs)
    assert emu.count() == 3, emu.operations()  # read, delete bucket, delete key


def test_auto_asks_the_server(garage, driver):
    emu = garage.require_emulator()
    inputs = garage.inputs(alias(), adminApiVersion="auto")
    outputs = driver.create(T, inputs)
    probes = [r for r in emu.requests if r["operation"] == "GetClusterHealth"]
    assert len(probes) == 1
    used = {r["version"] for r in emu.requests if r["operation"] != "GetClusterHealth"}
    assert used == {garage.api_version}
    driver.delete(T, inputs, outputs)


# -- behaviours ---------------------------------------------------------------------------------
def test_existing_alias_refused_then_adopted(garage, driver):
    name = alias()
    existing = garage.admin().create_bucket(name)
    inputs = garage.inputs(name, keys=[{"name": "app", "write": True}], quotas={"maxObjects": 100})
    with pytest.raises(Conflict) as refused:
        driver.create(T, inputs)
    assert existing["id"] in str(refused.value) and "adoptExisting" in str(refused.value)
    assert garage.key_ids() == set()
    outputs = driver.create(T, dict(inputs, adoptExisting=True))
    assert outputs["bucketId"] == existing["id"]
    assert outputs["quotas"] == {"maxSize": None, "maxObjects": 100}
    assert outputs["keys"]["app"]["write"] and outputs["keys"]["app"]["created"]
    assert garage.bucket_ids() == {existing["id"]}
    driver.delete(T, inputs, outputs)
    assert garage.bucket_ids() == set() and garage.key_ids() == set()


def test_rename_keeps_the_bucket_and_its_objects(garage, driver):
    old, new = alias(), alias()
    inputs = garage.inputs(old, keys=[{"name": "app", "write": True}])
    outputs = driver.create(T, inputs)
    put_object(garage, outputs)
    renamed = driver.update(T, inputs, outputs, dict(inputs, globalAlias=new))
    assert renamed["bucketId"] == outputs["bucketId"] and renamed["globalAlias"] == new
    assert garage.bucket_ids() == {outputs["bucketId"]}
    info = garage.admin().get_bucket(id=outputs["bucketId"])
    assert info["globalAliases"] == [new] and info["objects"] == 1
    creds = renamed["keys"]["app"]
    body = garage.s3(creds["accessKeyId"], creds["secretAccessKey"]).get_object(new, "a/b.txt").read()
    assert body == b"hello"
    with pytest.raises(Conflict, match="not empty"):
        driver.delete(T, dict(inputs, globalAlias=new), renamed)
    driver.delete(T, dict(inputs, globalAlias=new, forceDestroy=True), renamed)
    assert garage.bucket_ids() == set()


def test_rename_onto_a_taken_alias_is_refused(garage, driver):
    taken = garage.admin().create_bucket(alias())
    inputs = garage.inputs(alias())
    outputs = driver.create(T, inputs)
    with pytest.raises(Conflict, match="taken"):
        driver.update(T, inputs, outputs, dict(inputs, globalAlias=taken["globalAliases"][0]))
    driver.delete(T, inputs, outputs)
    assert garage.bucket_ids() == {taken["id"]}


def test_keys_added_and_removed(garage, driver):
    admin = garage.admin()
    given = admin.create_key("deployer-key")
    name = alias()
    inputs = garage.inputs(name, keys=[{"name": "app", "write": True}])
    outputs = driver.create(T, inputs)
    created_id = outputs["keys"]["app"]["accessKeyId"]
    more = dict(inputs, keys=[{"name": "app", "write": True},
                              {"name": "ops", "accessKeyId": given["accessKeyId"], "owner": True}])
    grown = driver.update(T, inputs, outputs, more)
    assert grown["keys"]["ops"] == {"accessKeyId": given["accessKeyId"], "secretAccessKey": given["secretAccessKey"],
                                    "read": True, "write": False, "owner": True, "created": False}
    assert grown["keys"]["app"] == outputs["keys"]["app"]
    fewer = dict(inputs, keys=[{"name": "ops", "accessKeyId": given["accessKeyId"], "read": False}])
    shrunk = driver.update(T, more, grown, fewer)
    assert set(shrunk["keys"]) == {"ops"}
    assert admin.get_key(created_id) is None  # made by the resource: deleted
    perms = {k["accessKeyId"]: k["permissions"] for k in admin.get_bucket(id=outputs["bucketId"])["keys"]}
    assert perms.get(given["accessKeyId"], {}) in ({}, {"read": False, "write": False, "owner": False})
    assert driver.read(T, fewer, shrunk) == shrunk
    driver.delete(T, fewer, shrunk)
    assert garage.key_ids() == {given["accessKeyId"]}  # given to it: kept


def test_unknown_access_key_is_reported_and_nothing_is_left(garage, driver):
    inputs = garage.inputs(alias(), keys=[{"name": "x", "accessKeyId": "GK" + "0" * 24}])
    with pytest.raises(NotFound, match=r"keys\[0\]\.accessKeyId"):
        driver.create(T, inputs)
    assert garage.bucket_ids() == set() and garage.key_ids() == set()


def test_quota_null_is_unlimited_and_zero_is_zero(garage, driver):
    inputs = garage.inputs(alias())
    outputs = driver.create(T, inputs)
    assert outputs["quotas"] == {"maxSize": None, "maxObjects": None}
    zero = dict(inputs, quotas={"maxSize": 0, "maxObjects": None})
    limited = driver.update(T, inputs, outputs, zero)
    assert limited["quotas"] == {"maxSize": 0, "maxObjects": None}
    assert garage.admin().get_bucket(id=outputs["bucketId"])["quotas"] == {"maxSize": 0, "maxObjects": None}
    back = driver.update(T, zero, limited, inputs)
    assert garage.admin().get_bucket(id=outputs["bucketId"])["quotas"] == {"maxSize": None, "maxObjects": None}
    assert driver.read(T, inputs, back) == back
    driver.delete(T, inputs, back)


def test_website_on_and_off(garage, driver):
    name = alias()
    inputs = garage.inputs(name)
    outputs = driver.create(T, inputs)
    assert outputs["website"]["enable"] is False and outputs["websiteEndpoint"] is None
    on = dict(inputs, website={"enable": True, "errorDocument": "404.html", "rootDomain": "web.example"})
    served = driver.update(T, inputs, outputs, on)
    assert served["website"] == {"enable": True, "indexDocument": "index.html", "errorDocument": "404.html"}
    assert served["websiteEndpoint"] == f"http://{name}.web.example"
    info = garage.admin().get_bucket(id=outputs["bucketId"])
    assert info["websiteAccess"] and info["websiteConfig"]["indexDocument"] == "index.html"
    off = driver.update(T, on, served, inputs)
    assert off["website"]["enable"] is False
    assert not garage.admin().get_bucket(id=outputs["bucketId"])["websiteAccess"]
    driver.delete(T, inputs, off)


def test_cors_and_lifecycle_over_s3(garage, driver):
    keys = [{"name": "admin", "write": True, "owner": True}]
    rule = {"allowedOrigins": ["https://a.example"], "allowedMethods": ["GET", "PUT"],
            "allowedHeaders": ["*"], "exposeHeaders": ["ETag"], "maxAgeSeconds": 600, "id": "browser"}
    inputs = garage.inputs(alias(), keys=keys, cors=[rule],
                           lifecycle=[{"id": "tmp", "prefix": "tmp/", "expirationDays": 7}])
    outputs = driver.create(T, inputs)
    assert outputs["cors"] == [rule]
    assert outputs["lifecycle"] == [{"id": "tmp", "enabled": True, "prefix": "tmp/", "expirationDays": 7,
                                     "abortIncompleteMultipartUploadDays": None}]
    creds = outputs["keys"]["admin"]
    from fediversity_providers.providers.garage_bucket.s3 import S3

    s3 = S3(garage.s3_endpoint, garage.region, creds["accessKeyId"], creds["secretAccessKey"])
    assert s3.get_cors(outputs["globalAlias"]) == [rule]  # really on the S3 server
    s3.set_cors(outputs["globalAlias"], [dict(rule, allowedOrigins=["*"])])  # drift, out of band
    assert driver.read(T, inputs, outputs)["cors"][0]["allowedOrigins"] == ["*"]
    assert driver.update(T, inputs, outputs, inputs) == outputs  # converged back
    assert s3.get_cors(outputs["globalAlias"]) == [rule]
    cleared = driver.update(T, inputs, outputs, dict(inputs, cors=[], lifecycle=[]))
    assert cleared["cors"] == [] and s3.get_cors(outputs["globalAlias"]) == []
    assert s3.get_lifecycle(outputs["globalAlias"]) == []
    driver.delete(T, dict(inputs, cors=[], lifecycle=[]), cleared)


def test_cors_needs_an_owner_key(garage, driver):
    inputs = garage.inputs(alias(), cors=[{"allowedOrigins": ["*"], "allowedMethods": ["GET"]}])
    with pytest.raises(InvalidInput, match="owner"):
        driver.create(T, inputs)


def test_non_empty_delete_refused_then_forced(garage, driver):
    inputs = garage.inputs(alias(), keys=[{"name": "app", "write": True}])
    outputs = driver.create(T, inputs)
    for i in range(3):
        put_object(garage, outputs, key=f"obj/{i}")
    creds = outputs["keys"]["app"]
    client = garage.s3(creds["accessKeyId"], creds["secretAccessKey"])
    client._create_multipart_upload(outputs["globalAlias"], "big.bin", {})
    with pytest.raises(Conflict, match="forceDestroy"):
        driver.delete(T, inputs, outputs)
    assert garage.bucket_ids() == {outputs["bucketId"]}
    assert driver.read(T, inputs, outputs)["bucketId"] == outputs["bucketId"]
    driver.delete(T, dict(inputs, forceDestroy=True), outputs)
    assert garage.bucket_ids() == set() and garage.key_ids() == set()


def test_forced_delete_without_a_writing_key(garage, driver):
    """No key of the resource may delete objects: a temporary key does it, and goes too."""
    inputs = garage.inputs(alias(), keys=[{"name": "app", "write": True}])
    outputs = driver.create(T, inputs)
    put_object(garage, outputs)
    readonly = dict(inputs, keys=[{"name": "app"}], forceDestroy=True)
    outputs = driver.update(T, inputs, outputs, readonly)
    if garage.emulator is not None:
        garage.emulator.reset_counts()
    driver.delete(T, readonly, outputs)
    assert garage.bucket_ids() == set() and garage.key_ids() == set()
    if garage.emulator is not None:  # a temporary key did the emptying
        assert garage.emulator.count(OPS["CreateKey"][garage.api_version]) == 1


def test_deleted_out_of_band_reads_as_gone(garage, driver):
    inputs = garage.inputs(alias())
    outputs = driver.create(T, inputs)
    garage.admin().delete_bucket(outputs["bucketId"])
    with pytest.raises(NotFound):
        driver.read(T, inputs, outputs)
    driver.delete(T, inputs, outputs)  # already gone: succeeds


# -- faults ---------------------------------------------------------------------------------------
FAULTS = [(mode, op) for mode in ("5xx", "slow", "drop", "lost", "5xx-after", "slow-start")
          for op in ("GetBucketInfo", "ListKeys", "CreateKey", "CreateBucket", "AllowBucketKey",
                     "DeleteBucket", "DeleteKey")]


@pytest.mark.parametrize("mode,op", FAULTS, ids=[f"{m}-{o}" for m, o in FAULTS])
def test_fault_leaves_no_orphan(garage, driver, mode, op):
    emu = garage.require_emulator()
    name = alias()
    # "slow": the answer comes long after the provider gave up waiting (0.4 s);
    # "slow-start": the work starts late, but within the provider's patience (as long again)
    inputs = garage.inputs(name, keys=[{"name": "app", "write": True}], requestTimeout=0.4, retryTimeout=10)
    operation = OPS[op][garage.api_version]
    deleting = op.startswith("Delete")
    delay = 0.5 if mode == "slow-start" else 1.0
    if not deleting:
        emu.fault(mode, operation, delay=delay)
    outputs = driver.create(T, inputs)
    assert [b["aliases"] for b in emu.buckets.values()] == [[name]]
    assert [k["name"].rsplit(":", 1)[0] for k in emu.keys.values()] == [f"{name}:app"]
    assert driver.read(T, inputs, outputs) == outputs
    if deleting:
        emu.fault(mode, operation, delay=delay)
    driver.delete(T, inputs, outputs)
    assert emu.buckets == {} and emu.keys == {}
    assert any(r["fault"] == mode for r in emu.requests), "the fault never fired"


@pytest.mark.parametrize("op", ["CreateBucket", "AllowBucketKey"])
def test_persistent_failure_is_reported_and_rolled_back(garage, driver, op):
    emu = garage.require_emulator()
    emu.fault("5xx", OPS[op][garage.api_version], times=10_000)
    inputs = garage.inputs(alias(), keys=[{"name": "app"}], retryTimeout=0.5)
    with pytest.raises(Transient, match="500"):
        driver.create(T, inputs)
    assert emu.buckets == {} and emu.keys == {}


def test_v1_deletes_on_garage_2_say_what_to_do(garage_emulator, garage_s3, driver, tmp_path):
    from fediversity_providers.providers.garage_bucket.testing import GarageTarget

    emu = garage_emulator  # Garage 2.x, which serves v1 except its deletes
    token_file = tmp_path / "token"
    token_file.write_text(emu.token)
    garage = GarageTarget(admin_endpoint=emu.endpoint, s3_endpoint=emu.s3_endpoint, token=emu.token,
                          token_file=token_file, api_version="v1", emulator=emu)
    inputs = garage.inputs(alias())
    outputs = driver.create(T, inputs)
    with pytest.raises(InvalidInput, match="adminApiVersion"):
        driver.delete(T, inputs, outputs)
    driver.delete(T, dict(inputs, adminApiVersion="v2"), outputs)
    assert emu.buckets == {}


def test_unreachable_admin_api(garage, driver, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inputs = dict(garage.inputs(alias()), adminEndpoint=f"http://127.0.0.1:{port}", retryTimeout=0.3)
    with pytest.raises(Transient, match="unreachable"):
        driver.create(T, inputs)


# -- secrets ----------------------------------------------------------------------------------------
def test_no_secret_in_logs_or_errors(garage, tmp_path):
    """Plant a canary admin token; run every operation and some failures through a real process;
    neither the token nor any secret key may appear on stderr or in an error."""
    emu = garage.require_emulator()
    canary = "canary-" + secrets.token_hex(16)
    emu.token = canary
    garage.token_file.write_text(canary + "\n")
    stderr = tmp_path / "stderr"
    errors: list[str] = []
    with open(stderr, "wb") as err:
        process = ProviderProcess(stderr=err.fileno())
        d = SubprocessDriver.__new__(SubprocessDriver)
        d.process = process
        inputs = garage.inputs(alias(), keys=[{"name": "app", "write": True, "owner": True}],
                               cors=[{"allowedOrigins": ["*"], "allowedMethods": ["GET"]}])
        outputs = d.create(T, inputs)
        secret = outputs["keys"]["app"]["secretAccessKey"]
        put_object(garage, outputs)
        d.read(T, inputs, outputs)
        bad_key = dict(inputs, keys=inputs["keys"] + [{"name": "x", "accessKeyId": "GK" + "1" * 24}])
        for call in (lambda: d.delete(T, inputs, outputs),  # not empty
                     lambda: d.update(T, inputs, outputs, bad_key),
                     lambda: d.create(T, dict(inputs, quotas={"maxObjects": 7}))):  # alias taken by another resource
            with pytest.raises(Exception) as failed:
                call()
            errors.append(str(failed.value))
        emu.token = "another-token"  # the file's token is now refused
        with pytest.raises(AccessDenied) as refused:
            d.read(T, inputs, outputs)
        errors.append(str(refused.value))
        emu.token = canary
        d.delete(T, dict(inputs, forceDestroy=True), outputs)
        assert process.close() == 0
    log = stderr.read_text()
    assert errors and all(errors)
    for text in [log, *errors]:
        assert canary not in text
        assert secret not in text
    assert emu.buckets == {} and emu.keys == {}


# -- the documents ------------------------------------------------------------------------------------
def test_traffic_outside_the_documents_is_caught(garage_emulator):
    """The emulator refuses, and records, what Garage's documents do not allow."""
    import http.client
    import json

    emu = garage_emulator
    port = int(emu.endpoint.rsplit(":", 1)[1])
    auth = {"Authorization": f"Bearer {emu.token}", "Content-Type": "application/json"}
    bad = [("POST", "/v2/CreateBucket", {"globalAlias": 5}),       # wrong type
           ("POST", "/v2/AllowBucketKey", {"bucketId": "x"}),       # required fields missing
           ("GET", "/v2/GetBucketInfo?name=x", None),               # undocumented parameter
           ("POST", "/v2/DeleteBucket", None),                      # id missing
           ("GET", "/v1/buckets", None)]                             # no such operation
    for method, target, body in bad:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request(method, target, body=json.dumps(body) if body is not None else None, headers=auth)
        assert conn.getresponse().status == 400
        conn.close()
    assert len(emu.violations) == len(bad)
    emu.violations.clear()


def test_corrections_to_the_documents():
    from fediversity_providers.providers.garage_bucket.testing.openapi import Spec, SpecViolation

    v1, v2 = Spec("v1"), Spec("v2")
    h = {"authorization": "Bearer t"}
    assert v2.check_request("POST", "/v2/DeleteBucket?id=abc", b"", h) == "DeleteBucket"
    assert v2.check_request("GET", "/v2/GetKeyInfo?id=GK1&showSecretKey=true", b"", h) == "GetKeyInfo"
    assert v1.check_request("GET", "/v1/key?list", b"", h) == "ListKeys"
    assert v1.check_request("POST", "/v1/key?list", b'{"name": "k"}', {**h, "content-type": "application/json"}) == "AddKey"
    v2.check_response("DeleteBucket", "POST", "/v2/DeleteBucket?id=abc", 200, None)
    v1.check_response("DeleteBucket", "DELETE", "/v1/bucket?id=abc", 204, None)
    v1.check_response("DeleteKey", "DELETE", "/v1/key?id=abc", 204, None)
    error = {"code": "BucketNotEmpty", "message": "not empty", "region": "garage", "path": "/v2/DeleteBucket"}
    v2.check_response("DeleteBucket", "POST", "/v2/DeleteBucket?id=abc", 409, error)
    with pytest.raises(SpecViolation):
        v2.check_response("DeleteBucket", "POST", "/v2/DeleteBucket?id=abc", 204, None)
    with pytest.raises(SpecViolation):
        v2.check_response("GetBucketInfo", "GET", "/v2/GetBucketInfo?id=abc", 200, {"id": "abc"})
    with pytest.raises(SpecViolation):
        v2.check_request("POST", "/v2/DeleteBucket?id=abc", b"", {})  # no token


def test_reference_documents_location(monkeypatch, tmp_path):
    from fediversity_providers.providers.garage_bucket.testing import openapi as garage_openapi

    found = garage_openapi.reference_dir()
    assert (found / "garage-admin-v1.yml").is_file() and (found / "garage-admin-v2.json").is_file()
    monkeypatch.setenv(garage_openapi.ENV, str(tmp_path))
    assert garage_openapi.reference_dir() == tmp_path
    with pytest.raises(FileNotFoundError):
        garage_openapi.Spec("v2")


def test_cold_start_imports_stay_light():
    """Loading the type pulls in neither minio/urllib3 nor the HTTP client: requests do."""
    import subprocess
    import sys

    code = ("import sys, fediversity_providers.providers.garage_bucket as g; "
            "heavy = [m for m in ('minio', 'urllib3', 'http.client', 'xml.etree.ElementTree') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_refuses_to_create_without_state(garage, driver):
    with pytest.raises(InvalidInput):
        driver.create(T, garage.inputs(alias()), stateful=False)
    assert garage.bucket_ids() == set()


def test_any_settings_converge_and_read_back(garage_s3, tmp_path):
    """Generated settings: created, read back equal, updated to other generated settings, deleted,
    on both API versions, with every request and answer inside the documents."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    from fediversity_providers.providers.garage_bucket.testing import GarageEmulator

    sizes = st.none() | st.integers(min_value=0, max_value=2**40)
    key = st.fixed_dictionaries({"read": st.booleans(), "write": st.booleans(), "owner": st.booleans()})
    config = st.fixed_dictionaries({
        "quotas": st.fixed_dictionaries({"maxSize": sizes, "maxObjects": sizes}),
        "website": st.fixed_dictionaries({"enable": st.booleans(),
                                          "errorDocument": st.none() | st.sampled_from(["404.html", "e/x.html"])}),
        "keys": st.dictionaries(st.sampled_from(["app", "web", "backup"]), key, max_size=3).map(
            lambda d: [dict(v, name=k) for k, v in sorted(d.items())]),
    })
    emulators = {v: GarageEmulator(1 if v == "v1" else 2, s3=garage_s3) for v in ("v1", "v2")}
    token = tmp_path / "token"
    driver = InProcessDriver()

    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["v1", "v2"]), config, config)
    def converges(version, first, second):
        emu = emulators[version]
        token.write_text(emu.token)
        base = {"adminEndpoint": emu.endpoint, "adminTokenFile": str(token), "adminApiVersion": version,
                "s3Endpoint": emu.s3_endpoint, "globalAlias": alias()}
        a, b = dict(base, **first), dict(base, **second)
        outputs = driver.create(T, a)
        assert driver.read(T, a, outputs) == outputs
        assert outputs["quotas"] == first["quotas"]
        updated = driver.update(T, a, outputs, b)
        assert driver.read(T, b, updated) == updated
        assert updated["website"]["enable"] == second["website"]["enable"]
        assert {n: [k[p] for p in ("read", "write", "owner")] for n, k in updated["keys"].items()} == \
            {k["name"]: [k["read"], k["write"], k["owner"]] for k in second["keys"]}
        driver.delete(T, b, updated)
        assert emu.buckets == {} and emu.keys == {}

    try:
        converges()
    finally:
        for emu in emulators.values():
            emu.close()
    for emu in emulators.values():
        assert not emu.violations, emu.violations


def test_forced_delete_uses_permissions_as_they_are_now(garage, driver):
    """The recorded key may write, but its write permission was taken away behind the resource's back."""
    inputs = garage.inputs(alias(), keys=[{"name": "app", "write": True}], forceDestroy=True)
    outputs = driver.create(T, inputs)
    put_object(garage, outputs)
    garage.admin().set_permissions(outputs["bucketId"], outputs["keys"]["app"]["accessKeyId"],
                                   allow={}, deny={"write": True})
    if garage.emulator is not None:
        garage.emulator.reset_counts()
    driver.delete(T, inputs, outputs)
    assert garage.bucket_ids() == set() and garage.key_ids() == set()
    if garage.emulator is not None:  # a temporary key did the emptying
        assert garage.emulator.count(OPS["CreateKey"][garage.api_version]) == 1


def test_s3_configuration_documents():
    """What Garage answers with nothing configured (204, empty), and XML without a namespace."""
    from fediversity_providers.providers.garage_bucket import s3

    assert s3.parse_cors(b"") == [] and s3.parse_lifecycle(b"  ") == []
    rules = [{"id": None, "allowedOrigins": ["https://a.example?x=1&y=<2>"], "allowedMethods": ["GET"],
              "allowedHeaders": [], "exposeHeaders": [], "maxAgeSeconds": None}]
    assert s3.parse_cors(s3.cors_xml(rules)) == rules
    bare = (b"<LifecycleConfiguration><Rule><ID>r</ID><Status>Disabled</Status><Filter><Prefix>p/</Prefix>"
            b"</Filter><Expiration><Days>3</Days></Expiration></Rule></LifecycleConfiguration>")
    assert s3.parse_lifecycle(bare) == [{"id": "r", "enabled": False, "prefix": "p/", "expirationDays": 3,
                                         "abortIncompleteMultipartUploadDays": None}]


@pytest.mark.parametrize("change,field", [
    ({"keys": [{"name": "a"}, {"name": "a"}]}, r"keys\[1\]\.name"),
    ({"keys": [{"name": "a", "accessKeyId": "GK" + "2" * 24}, {"name": "b", "accessKeyId": "GK" + "2" * 24}]},
     r"keys\[1\]\.accessKeyId"),
    ({"lifecycle": [{"id": "x"}], "keys": [{"name": "a", "owner": True}]}, r"lifecycle\[0\]"),
    ({"adminTokenFile": "/nonexistent/token"}, "adminTokenFile"),
])
def test_inputs_refused_before_any_request(garage, driver, change, field):
    with pytest.raises(InvalidInput, match=field):
        driver.create(T, dict(garage.inputs(alias()), **change))
    if garage.emulator is not None:
        assert garage.emulator.requests == []


def test_s3_permissions_are_enforced_as_on_garage(garage, driver):
    """The S3 side refuses what Garage refuses, so the tests above prove the provider uses the right keys."""
    from minio.error import S3Error

    from fediversity_providers.providers.garage_bucket.s3 import S3

    emu = garage.require_emulator()
    inputs = garage.inputs(alias(), keys=[{"name": "app", "write": True}, {"name": "reader"}])
    outputs = driver.create(T, inputs)
    put_object(garage, outputs, "app")
    with pytest.raises(S3Error, match="AccessDenied"):
        put_object(garage, outputs, "reader")
    creds = outputs["keys"]["app"]
    with pytest.raises(Exception, match="AccessDenied"):  # CORS needs owner
        S3(garage.s3_endpoint, garage.region, creds["accessKeyId"], creds["secretAccessKey"]).set_cors(
            outputs["globalAlias"], [{"allowedOrigins": ["*"], "allowedMethods": ["GET"]}])
    assert len(emu.s3_gate.refused) == 2
    emu.s3_gate.refused.clear()
    driver.delete(T, dict(inputs, forceDestroy=True), outputs)
