"""Kubernetes protobuf request bodies decoded into the JSON Kubernetes would have read: bodies captured from the
real kubectl, hand-encoded samples of the special types, malformed input (always a 400), and the table."""

from __future__ import annotations

import base64
import json
import lzma
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clover.backends.local.kube import protobuf, resources
from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.kube.protobuf import decode, decode_message, go_duration, message_for

CORE = "k8s.io.api.core.v1"
META = "k8s.io.apimachinery.pkg.apis.meta.v1"

# Captured from kubectl 1.33 (`kubectl create deployment cap --image=nginx --replicas=2 --port=8080 -v=9` and
# `kubectl create service clusterip capsvc --tcp=80:8080 -v=9`): every non-pointer field is on the wire,
# empty strings and zeros included, and the zero creationTimestamp as an empty message.
KUBECTL_DEPLOYMENT = (
    b'k8s\x00\n\x15\n\x07apps/v1\x12\nDeployment\x12\xb9\x01\n\x1f\n\x03cap\x12\x00\x1a\x00"\x00*\x002\x008\x00B'
    b'\x00Z\n\n\x03app\x12\x03cap\x12\x87\x01\x08\x02\x12\x0c\n\n\n\x03app\x12\x03cap\x1am\n\x1c\n\x00\x12\x00\x1a'
    b'\x00"\x00*\x002\x008\x00B\x00Z\n\n\x03app\x12\x03cap\x12M\x12/\n\x05nginx\x12\x05nginx*\x002\x0b\n\x00\x10'
    b'\x00\x18\x90?"\x00*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J'
    b'\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00"\x02\n\x00(\x008\x00\x1a\x0c\x08'
    b'\x00\x10\x00\x18\x00 \x00(\x008\x00\x1a\x00"\x00'
)
KUBECTL_SERVICE = (
    b'k8s\x00\n\r\n\x02v1\x12\x07Service\x12r\n%\n\x06capsvc\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00Z\r\n\x03app'
    b'\x12\x06capsvc\x12E\n\x1b\n\x0780-8080\x12\x03TCP\x18P"\x07\x08\x00\x10\x90?\x1a\x00(\x00\x12\r\n\x03app'
    b'\x12\x06capsvc\x1a\x00"\tClusterIP:\x00B\x00R\x00Z\x00`\x00h\x00\x1a\x02\n\x00\x1a\x00"\x00'
)


# ------------------------------------------------------------------------------------------------ an encoder


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | str | int | bool) -> bytes:
    """One field: ints and bools as varints, str and bytes length-delimited."""
    if isinstance(value, bool | int):
        return varint(number << 3) + varint(int(value))
    raw = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def entry(number: int, key: str, value: bytes | str) -> bytes:
    return field(number, field(1, key) + field(2, value))


def body(api_version: str, kind: str, message: bytes) -> bytes:
    return b"k8s\x00" + field(1, field(1, api_version) + field(2, kind)) + field(2, message)


def int_or_string(value: int | str) -> bytes:
    return field(1, 1) + field(3, value) if isinstance(value, str) else field(1, 0) + field(2, value)


def quantity(text: str) -> bytes:
    return field(1, text)


def timestamp(seconds: int, nanos: int = 0) -> bytes:
    return field(1, seconds) + field(2, nanos)


# ------------------------------------------------------------------------------------------------ kubectl's bodies


def test_kubectl_deployment_body_is_what_kubectl_meant() -> None:
    # What `kubectl create deployment … --dry-run=client -o json` prints, less the null creationTimestamps.
    assert decode(KUBECTL_DEPLOYMENT) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cap", "labels": {"app": "cap"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "cap"}},
            "template": {"metadata": {"labels": {"app": "cap"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                  "ports": [{"containerPort": 8080}], "resources": {}}]}},
            "strategy": {},
        },
        "status": {},
    }


def test_kubectl_service_body_is_what_kubectl_meant() -> None:
    assert decode(KUBECTL_SERVICE) == {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "capsvc", "labels": {"app": "capsvc"}},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                 "selector": {"app": "capsvc"}, "type": "ClusterIP"},
        "status": {"loadBalancer": {}},
    }


# ------------------------------------------------------------------------------------------------ special types


def test_pod_with_probes_volumes_resources_and_pointers() -> None:
    http_get = field(1, "/healthz") + field(2, int_or_string("http"))
    probe = field(1, field(2, http_get)) + field(2, 5) + field(3, 0)  # handler inlined; zero omitempty dropped
    resources_ = entry(1, "cpu", quantity("500m")) + entry(2, "memory", quantity("64Mi"))
    security = field(5, False) + field(4, 1000)  # runAsNonRoot: false is a pointer, kept
    container = (field(1, "app") + field(2, "img") + field(3, "run") + field(3, "--fast") + field(5, "")
                 + field(7, field(1, "K") + field(2, "V")) + field(8, resources_) + field(10, probe)
                 + field(15, security) + field(16, False))
    volume = field(1, "scratch") + field(2, field(2, b""))  # emptyDir: {} (a pointer to an empty struct)
    spec = field(1, volume) + field(2, container) + field(4, 0) + field(3, "") + field(99, "from a newer kube")
    pod = field(1, field(1, "p") + field(3, "ns") + entry(12, "note", "x")) + field(2, spec)
    decoded = decode(body("v1", "Pod", pod))
    assert decoded == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "annotations": {"note": "x"}},
        "spec": {
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [{
                "name": "app", "image": "img", "command": ["run", "--fast"], "env": [{"name": "K", "value": "V"}],
                "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5},
                "securityContext": {"runAsNonRoot": False, "runAsUser": 1000},
            }],
            "terminationGracePeriodSeconds": 0,
        },
    }


def test_times_micro_times_and_negative_numbers() -> None:
    lease_spec = (field(1, "holder") + field(2, -1) + field(3, timestamp(1_700_000_000, 123_456_789))
                  + field(4, timestamp(0)))
    meta = field(1, "l") + field(8, timestamp(1_700_000_000, 999)) + field(9, b"")
    decoded = decode(body("coordination.k8s.io/v1", "Lease", field(1, meta) + field(2, lease_spec)))
    assert decoded["metadata"] == {"name": "l", "creationTimestamp": "2023-11-14T22:13:20Z"}  # seconds only
    assert decoded["spec"] == {"holderIdentity": "holder", "leaseDurationSeconds": -1,
                               "acquireTime": "2023-11-14T22:13:20.123456Z", "renewTime": "1970-01-01T00:00:00.000000Z"}


def test_zero_time_is_left_out() -> None:
    meta = field(1, "z") + field(8, timestamp(-62135596800))
    assert decode(body("v1", "ConfigMap", field(1, meta)))["metadata"] == {"name": "z"}


def test_bytes_maps_and_managed_fields() -> None:
    fields_v1 = field(1, b'{"f:data":{}}')
    managed = field(1, "kubectl") + field(2, "Update") + field(4, timestamp(0)) + field(6, "FieldsV1") + field(7, fields_v1)
    meta = field(1, "c") + field(17, managed)
    config_map = field(1, meta) + entry(2, "text", "v") + entry(3, "blob", b"\x00\xff") + field(4, True)
    assert decode(body("v1", "ConfigMap", config_map)) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "managedFields": [{"manager": "kubectl", "operation": "Update",
                                                     "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                                                     "fieldsV1": {"f:data": {}}}]},
        "data": {"text": "v"}, "binaryData": {"blob": "AP8="}, "immutable": True,
    }


def test_delete_options_of_any_group_version_and_eviction() -> None:
    options = field(1, 0) + field(2, field(1, "uid-1")) + field(4, "Foreground") + field(5, "All")
    assert decode(body("apps/v1", "DeleteOptions", options)) == {
        "apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1"}, "propagationPolicy": "Foreground", "dryRun": ["All"]}
    eviction = field(1, field(1, "p")) + field(2, field(1, 30))
    assert decode(body("policy/v1", "Eviction", eviction))["deleteOptions"] == {"gracePeriodSeconds": 30}


def test_singular_message_seen_twice_is_merged_and_last_scalar_wins() -> None:
    meta = field(1, field(1, "first") + entry(11, "a", "1")) + field(1, field(1, "second") + entry(11, "b", "2"))
    assert decode(body("v1", "Namespace", meta))["metadata"] == {"name": "second", "labels": {"a": "1", "b": "2"}}


def test_repeated_numbers_packed_or_not() -> None:
    # PodSecurityContext.supplementalGroups (repeated int64): Go's decoder takes one varint per field or a packed run.
    packed = varint(4 << 3 | 2) + varint(3) + varint(1) + varint(2) + varint(3)
    decoded = decode_message(field(4, 7) + packed + field(4, -5), f"{CORE}.PodSecurityContext")
    assert decoded == {"supplementalGroups": [7, 1, 2, 3, -5]}
    with pytest.raises(ApiError, match="unexpected EOF"):
        decode_message(varint(4 << 3 | 2) + varint(1) + b"\x80", f"{CORE}.PodSecurityContext")


def test_token_request_with_a_named_slice_map_value() -> None:
    spec = (field(1, "api") + field(4, 3600) + field(3, field(1, "Pod") + field(3, "p") + field(4, "u-1"))
            + field(5, field(1, "k") + field(2, field(1, "a") + field(1, "b"))) + field(5, field(1, "empty")))
    decoded = decode(body("authentication.k8s.io/v1", "TokenRequest", field(1, field(1, "sa")) + field(2, spec)))
    assert decoded["spec"] == {"audiences": ["api"], "expirationSeconds": 3600,
                               "boundObjectRef": {"kind": "Pod", "name": "p", "uid": "u-1"},
                               "attestations": {"k": ["a", "b"], "empty": []}}


def test_event_micro_time_and_series() -> None:
    series = field(1, 3) + field(2, timestamp(1_700_000_000, 5_000))
    event = field(1, field(1, "e")) + field(2, timestamp(1_700_000_000, 1_999)) + field(3, series) + field(4, "me")
    decoded = decode(body("events.k8s.io/v1", "Event", event))
    assert decoded["eventTime"] == "2023-11-14T22:13:20.000001Z"
    assert decoded["series"] == {"count": 3, "lastObservedTime": "2023-11-14T22:13:20.000005Z"}


@pytest.mark.parametrize(("nanoseconds", "text"), [
    (0, "0s"), (1, "1ns"), (1_500, "1.5µs"), (1_500_000, "1.5ms"), (1_000_000_000, "1s"), (90_000_000_000, "1m30s"),
    (3_600_000_000_000, "1h0m0s"), (3_723_500_000_000, "1h2m3.5s"), (-2_000_000, "-2ms"),
])
def test_durations_as_go_writes_them(nanoseconds: int, text: str) -> None:
    assert go_duration(nanoseconds) == text


# Surrogates cannot be UTF-8 encoded: a Go string never holds one.
_CHARACTERS = st.characters(blacklist_categories=["Cs"])
_TEXT = st.text(_CHARACTERS, max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.text(_CHARACTERS, min_size=1, max_size=20),
       st.dictionaries(_TEXT, _TEXT, max_size=4), st.dictionaries(_TEXT, st.binary(max_size=8), max_size=3),
       st.lists(_TEXT, max_size=3))
def test_config_maps_round_trip(name: str, data: dict[str, str], binary: dict[str, bytes],
                                finalizers: list[str]) -> None:
    meta = field(1, name) + b"".join(field(14, f) for f in finalizers)
    message = (field(1, meta) + b"".join(entry(2, k, v) for k, v in data.items())
               + b"".join(entry(3, k, v) for k, v in binary.items()))
    decoded = decode(body("v1", "ConfigMap", message))
    expected: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    if finalizers:
        expected["metadata"]["finalizers"] = finalizers
    if data:
        expected["data"] = data
    if binary:
        expected["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    assert decoded == expected


def test_invalid_utf8_is_replaced_as_go_json_writes_it() -> None:
    assert decode(body("v1", "ConfigMap", field(1, field(1, b"a\xffb"))))["metadata"] == {"name": "a\ufffdb"}


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(("data", "code", "wording"), [
    (b"{}", 400, "missing the k8s\\x00 prefix"),
    (b"k8s\x00\x0a\xff", 400, "unexpected EOF"),
    (b"k8s\x00" + field(1, field(2, "Pod")) + field(2, b""), 415, "Pod in ?"),
    (body("networking.istio.io/v1", "VirtualService", b""), 415, "unknown format"),
    (b"k8s\x00" + field(1, field(1, "v1")), 400, "'Kind' is missing"),
    (body("v1", "ConfigMap", field(1, 5)), 400, "wrong wireType = 0 for field metadata"),
    (body("v1", "ConfigMap", b"\x00"), 400, "illegal tag 0"),
    (body("v1", "ConfigMap", b"\x0c"), 400, "end group for non-group"),
    (body("v1", "ConfigMap", b"\x0f"), 400, "illegal wireType 7"),
    (body("v1", "ConfigMap", b"\x08" + b"\xff" * 10 + b"\x01"), 400, "integer overflow"),
    (body("v1", "Service", field(2, field(1, field(4, field(1, 7))))), 400, "impossible IntOrString.Type"),
    (body("v1", "Pod", field(2, field(2, field(8, entry(1, "cpu", quantity("lots")))))), 400, "regular expression"),
    (body("v1", "ConfigMap", field(1, field(8, timestamp(10**12)))), 400, "year outside of range"),
    (body("v1", "ConfigMap", field(1, field(17, field(7, field(1, b"{nope"))))), 400, "MarshalJSON"),
])
def test_malformed_bodies_are_refused_as_kubernetes_words_it(data: bytes, code: int, wording: str) -> None:
    with pytest.raises(ApiError) as refused:
        decode(data)
    assert refused.value.code == code and wording in refused.value.message, refused.value.message


KIND_BODIES = [(version, kind) for version, kind in [key.rsplit("/", 1) for key in protobuf.decodable_kinds()]]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KIND_BODIES), st.binary(max_size=300))
def test_any_bytes_decode_or_raise_a_400(kind: tuple[str, str], data: bytes) -> None:
    version = "v1" if kind[0] == "*" else kind[0]
    try:
        json.dumps(decode(body(version, kind[1], data)), allow_nan=False)
    except ApiError as error:
        assert error.code == 400


# Well-formed protobuf of random shape: exercises the field-type checks rather than the framing.
_FIELDS = st.recursive(
    st.tuples(st.integers(1, 40), st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=20))),
    lambda inner: st.tuples(st.integers(1, 40), st.lists(inner, max_size=5).map(
        lambda items: b"".join(field(n, v) for n, v in items))),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KIND_BODIES), st.lists(_FIELDS, max_size=8))
def test_random_wellformed_messages_decode_or_raise_a_400(kind: tuple[str, str], fields: list[Any]) -> None:
    version = "v1" if kind[0] == "*" else kind[0]
    message = b"".join(field(number, value) for number, value in fields)
    try:
        json.dumps(decode(body(version, kind[1], message)), allow_nan=False)
    except ApiError as error:
        assert error.code == 400


# ------------------------------------------------------------------------------------------------ the table


def test_every_served_builtin_kind_is_decodable() -> None:
    for resource in resources.RESOURCES:
        if resource.group.endswith("istio.io") or resource.group == "apiextensions.k8s.io":
            continue  # custom resources and CRDs: JSON and YAML only, as for any CRD in Kubernetes
        for version in resource.versions:
            api_version = f"{resource.group}/{version}" if resource.group else version
            assert message_for(api_version, resource.kind), (api_version, resource.kind)
    for extra in ("policy/v1/Eviction", "autoscaling/v1/Scale", "*/DeleteOptions", "*/Status"):
        assert extra in protobuf.decodable_kinds()


def test_table_is_small_and_every_type_resolves() -> None:
    assert protobuf.TABLE_FILE.stat().st_size < 20_000
    table = json.loads(lzma.decompress(protobuf.TABLE_FILE.read_bytes()))
    messages = table["messages"]
    known = set(messages) | set(protobuf._SPECIAL) | protobuf.SCALAR_TYPES
    for name, fields in messages.items():
        for number, (json_name, kind, _flags, *key) in fields.items():
            assert kind in known and all(k in known for k in key), (name, number, json_name, kind)
    assert messages[f"{META}.ObjectMeta"]["1"] == ["name", "string", 0]
    assert messages[f"{CORE}.Probe"]["1"][2] & protobuf.INLINE
    assert (protobuf.TABLE_FILE.parent / "NOTICE.md").read_text().count("Apache") >= 1
