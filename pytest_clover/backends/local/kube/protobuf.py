"""Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``) as the JSON objects they stand for.

kubectl's typed commands (``create deployment``, ``run``, ``expose``, ``create service``…) and client-go send
``k8s\\x00`` followed by a ``runtime.Unknown`` envelope: the object's apiVersion and kind, and the object
itself as protobuf. kube-apiserver decodes it into its Go struct; this module produces the JSON that struct
would be written as, so the rest of the server only ever sees JSON.

The messages come from a table generated from Kubernetes' own ``generated.proto`` files and Go struct tags by
``tools/gen_kube_protobuf.py`` (``protobuf/messages.json.xz``): field number → JSON name, type, repeated, map,
whether a zero is kept (a Go pointer or a field without ``omitempty``), whether JSON inlines the message. The
types whose JSON differs from their protobuf shape are converted here as Kubernetes converts them: Time and
MicroTime (RFC 3339), Duration (Go's ``1h2m3s``), IntOrString (a number or a string), Quantity (a string),
RawExtension and FieldsV1 (embedded JSON), ``bytes`` (base64).

Malformed input raises :class:`ApiError` 400 worded like Go's protobuf decoder; a kind without a table entry
raises 415, as a server without that kind's protobuf codec answers. Nothing else escapes.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import lzma
import math
import re
import struct
from pathlib import Path
from typing import Any

from .errors import ApiError

__all__ = ["MAGIC", "MEDIA_TYPE", "decodable_kinds", "decode", "decode_message", "message_for"]

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

TABLE_FILE = Path(__file__).with_name("protobuf") / "messages.json.xz"

# Table flags (see tools/gen_kube_protobuf.py).
REPEATED, MAP, KEEP_ZERO, INLINE, NAMED_SLICE = 1, 2, 4, 8, 16

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
TIME = f"{META}.Time"
MICRO_TIME = f"{META}.MicroTime"
DURATION = f"{META}.Duration"
FIELDS_V1 = f"{META}.FieldsV1"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
QUANTITY_VALUE = "k8s.io.apimachinery.pkg.api.resource.QuantityValue"
RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"

VARINT_TYPES = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "enum"}
FIXED64_TYPES = {"fixed64", "sfixed64", "double"}
FIXED32_TYPES = {"fixed32", "sfixed32", "float"}
SCALAR_TYPES = VARINT_TYPES | FIXED64_TYPES | FIXED32_TYPES | {"string", "bytes"}

# Real objects nest a couple of dozen messages deep; the table has no cycles among served kinds, so this only
# bounds hostile input through the embedded-JSON types.
MAX_DEPTH = 100

# resource.ParseQuantity's accepted shape (k8s.io/apimachinery/pkg/api/resource/quantity.go).
QUANTITY_SHAPE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")

# The zero time (0001-01-01T00:00:00Z) as Unix seconds: Go writes it as JSON null, so it is left out.
ZERO_TIME_SECONDS = -62135596800
MIN_SECONDS, MAX_SECONDS = ZERO_TIME_SECONDS, 253402300799  # years 1 to 9999


class _Malformed(Exception):
    """Raised inside the decoder; turned into one 400 at the boundary."""


@functools.cache
def _table() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(lzma.decompress(TABLE_FILE.read_bytes()))
    return loaded


def decodable_kinds() -> dict[str, str]:
    """``"<apiVersion>/<kind>"`` (``"*/<kind>"`` for the meta kinds of every group version) → protobuf message."""
    kinds: dict[str, str] = _table()["kinds"]
    return dict(kinds)


def message_for(api_version: str, kind: str) -> str | None:
    """The protobuf message of ``kind`` in ``api_version``, or None when bodies of that kind are not decoded."""
    kinds: dict[str, str] = _table()["kinds"]
    return kinds.get(f"{api_version}/{kind}") or kinds.get(f"*/{kind}")


def decode(data: bytes) -> dict[str, Any]:
    """A whole protobuf body (``k8s\\x00`` + ``runtime.Unknown``) as the JSON object it stands for, with its
    ``apiVersion`` and ``kind``. Malformed → ApiError 400; a kind not decoded here → 415."""
    if not data.startswith(MAGIC):
        raise ApiError(400, "provided object is not a protobuf message (missing the k8s\\x00 prefix)")
    try:
        envelope = _Reader(bytes(data[len(MAGIC) :]), "Unknown")
        api_version = kind = ""
        raw = b""
        for number, wire, value in envelope.fields():
            if number == 1:
                _expect(wire, 2, "TypeMeta")
                for inner_number, inner_wire, inner in _Reader(value, "TypeMeta").fields():
                    if inner_number in (1, 2):
                        _expect(inner_wire, 2, "APIVersion" if inner_number == 1 else "Kind")
                        text = _text(inner)
                        api_version, kind = (text, kind) if inner_number == 1 else (api_version, text)
            elif number == 2:
                _expect(wire, 2, "Raw")
                raw = value
            elif number in (3, 4):
                _expect(wire, 2, "ContentEncoding" if number == 3 else "ContentType")
    except _Malformed as exc:
        raise ApiError(400, str(exc)) from None
    if not kind:
        raise ApiError(400, "Object 'Kind' is missing in the protobuf body")
    message = message_for(api_version, kind)
    if message is None:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - {kind} in {api_version or '?'} "
            "is only accepted as application/json or application/yaml",
        )
    return {"apiVersion": api_version, "kind": kind, **decode_message(raw, message)}


def decode_message(data: bytes, message: str) -> dict[str, Any]:
    """One protobuf message (no envelope), by its full name (``k8s.io.api.apps.v1.Deployment``), as JSON.
    Malformed → ApiError 400; an unknown message name is a programming error (KeyError)."""
    if message not in _table()["messages"]:
        raise KeyError(message)
    try:
        return _message(bytes(data), message, 0)
    except _Malformed as exc:
        raise ApiError(400, str(exc)) from None
    except RecursionError:
        raise ApiError(400, "proto: exceeded maximum nesting depth") from None


# ------------------------------------------------------------------------------------------------ wire format


class _Reader:
    """The fields of one message: (number, wire type, value), value an int for varints, bytes otherwise.
    Groups (wire types 3 and 4, unused by Kubernetes) are skipped as Go's decoder skips unknown ones."""

    def __init__(self, data: bytes, message: str) -> None:
        self.data = data
        self.pos = 0
        self.message = message.rsplit(".", 1)[-1]

    def varint(self) -> int:
        result = shift = 0
        while True:
            if shift >= 64:
                raise _Malformed("proto: integer overflow")
            if self.pos >= len(self.data):
                raise _Malformed("unexpected EOF")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result & 0xFFFFFFFFFFFFFFFF
            shift += 7

    def take(self, size: int) -> bytes:
        if size < 0:
            raise _Malformed("proto: negative length found during unmarshaling")
        if self.pos + size > len(self.data):
            raise _Malformed("unexpected EOF")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def fields(self) -> list[tuple[int, int, Any]]:
        found: list[tuple[int, int, Any]] = []
        group_depth = 0
        while self.pos < len(self.data):
            tag = self.varint()
            number, wire = tag >> 3, tag & 7
            if number <= 0 or number >= 1 << 29:
                raise _Malformed(f"proto: {self.message}: illegal tag {number} (wire type {wire})")
            if wire == 0:
                value: Any = self.varint()
            elif wire == 1:
                value = self.take(8)
            elif wire == 2:
                length = self.varint()
                if length >= 1 << 63:
                    raise _Malformed("proto: negative length found during unmarshaling")
                value = self.take(length)
            elif wire == 5:
                value = self.take(4)
            elif wire == 3:
                group_depth += 1
                continue
            elif wire == 4:
                if group_depth == 0:
                    raise _Malformed(f"proto: {self.message}: wiretype end group for non-group")
                group_depth -= 1
                continue
            else:
                raise _Malformed(f"proto: illegal wireType {wire}")
            if group_depth == 0:
                found.append((number, wire, value))
        if group_depth:
            raise _Malformed("unexpected EOF")
        return found


def _expect(wire: int, expected: int, name: str) -> None:
    if wire != expected:
        raise _Malformed(f"proto: wrong wireType = {wire} for field {name}")


def _text(raw: bytes) -> str:
    # Go keeps the bytes of a proto2 string as they are; its JSON encoder then writes U+FFFD for invalid UTF-8.
    return raw.decode("utf-8", "replace")


# ------------------------------------------------------------------------------------------------ messages


def _message(data: bytes, message: str, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _Malformed("proto: exceeded maximum nesting depth")
    spec: dict[str, list[Any]] = _table()["messages"][message]
    values: dict[int, Any] = {}
    # A singular message field seen twice is merged, which for protobuf is decoding the concatenation.
    chunks: dict[int, list[bytes]] = {}
    for number, wire, value in _Reader(data, message).fields():
        field = spec.get(str(number))
        if field is None:
            continue  # a newer Kubernetes' field: skipped, as Go's decoder skips unknown fields
        name, kind, flags = field[0], field[1], field[2]
        if flags & MAP:
            _expect(wire, 2, name)
            key, item = _map_entry(value, field[3], kind, name, depth)
            values.setdefault(number, {})[key] = item
        elif kind in SCALAR_TYPES:
            if flags & REPEATED:
                values.setdefault(number, []).extend(_repeated_scalar(wire, value, kind, name))
            else:
                values[number] = _scalar(wire, value, kind, name)
        else:
            _expect(wire, 2, name)
            if flags & REPEATED:
                values.setdefault(number, []).append(_embedded(value, kind, depth))
            else:
                chunks.setdefault(number, []).append(value)
    for number, parts in chunks.items():
        kind = spec[str(number)][1]
        whole = b"".join(parts) if kind in _table()["messages"] or kind == INT_OR_STRING else parts[-1]
        values[number] = _embedded(whole, kind, depth)

    out: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, field in spec.items():
        number = int(key)
        if number not in values:
            continue
        name, kind, flags = field[0], field[1], field[2]
        value = values[number]
        if flags & INLINE and isinstance(value, dict):
            out.update(value)  # Go's JSON: the embedded struct's fields, shadowed by the outer ones
            continue
        if value is None:
            continue
        if kind in SCALAR_TYPES and not flags & (REPEATED | MAP) and not flags & KEEP_ZERO and _is_zero(value):
            continue
        own[name] = value
    out.update(own)
    return out


def _is_zero(value: Any) -> bool:
    return value is False or value == 0 or value == "" or value == b""


def _embedded(data: bytes, kind: str, depth: int) -> Any:
    """A message-typed value: the special types converted, the others decoded from the table."""
    special = _SPECIAL.get(kind)
    if special is not None:
        return special(data)
    decoded = _message(data, kind, depth + 1)
    spec = _table()["messages"][kind]
    if len(spec) == 1 and next(iter(spec.values()))[2] & NAMED_SLICE:
        # A Go named slice (``type AttestationValue []string``) is its items in JSON.
        return decoded.get("items", [])
    return decoded


def _map_entry(data: bytes, key_type: str, value_type: str, name: str, depth: int) -> tuple[str, Any]:
    key: Any = "" if key_type == "string" else 0
    value: Any = None
    for number, wire, raw in _Reader(data, name).fields():
        if number == 1:
            key = _scalar(wire, raw, key_type, name)
        elif number == 2:
            if value_type in SCALAR_TYPES:
                value = _scalar(wire, raw, value_type, name)
            else:
                _expect(wire, 2, name)
                value = _embedded(raw, value_type, depth)
    if value is None:
        # An entry without a value holds the value type's zero.
        value = _scalar(2, b"", value_type, name) if value_type in ("string", "bytes") else (
            _embedded(b"", value_type, depth) if value_type not in SCALAR_TYPES else 0)
    if isinstance(key, bool):
        key = "true" if key else "false"
    return str(key), value


def _scalar(wire: int, value: Any, kind: str, name: str) -> Any:
    if kind in VARINT_TYPES:
        _expect(wire, 0, name)
        return _varint_value(value, kind)
    if kind in FIXED64_TYPES:
        _expect(wire, 1, name)
        return _fixed_value(value, kind)
    if kind in FIXED32_TYPES:
        _expect(wire, 5, name)
        return _fixed_value(value, kind)
    _expect(wire, 2, name)
    if kind == "string":
        return _text(value)
    return base64.b64encode(value).decode("ascii")  # bytes: Go's JSON writes []byte as base64


def _repeated_scalar(wire: int, value: Any, kind: str, name: str) -> list[Any]:
    if wire != 2 or kind in ("string", "bytes"):
        return [_scalar(wire, value, kind, name)]
    # A packed run of numbers: accepted for repeated numeric fields whatever the proto says, as Go's is.
    packed = _Reader(value, name)
    if kind in VARINT_TYPES:
        items = []
        while packed.pos < len(packed.data):
            items.append(_varint_value(packed.varint(), kind))
        return items
    size = 8 if kind in FIXED64_TYPES else 4
    if len(value) % size:
        raise _Malformed("unexpected EOF")
    return [_fixed_value(value[i : i + size], kind) for i in range(0, len(value), size)]


def _varint_value(value: int, kind: str) -> Any:
    if kind == "bool":
        return value != 0
    if kind in ("int32", "enum"):
        value &= 0xFFFFFFFF  # Go's int32(x): the low 32 bits
        return value - (1 << 32) if value >= 1 << 31 else value
    if kind == "int64":
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "uint32":
        return value & 0xFFFFFFFF
    if kind == "sint32":
        value &= 0xFFFFFFFF
        return (value >> 1) ^ -(value & 1)
    if kind == "sint64":
        return (value >> 1) ^ -(value & 1)
    return value  # uint64


def _fixed_value(raw: bytes, kind: str) -> Any:
    fmt = {"fixed64": "<Q", "sfixed64": "<q", "double": "<d", "fixed32": "<I", "sfixed32": "<i", "float": "<f"}
    (value,) = struct.unpack(fmt[kind], raw)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Malformed(f"json: unsupported value: {value}")
    return value


# ------------------------------------------------------------------------------------------------ special types


def _parts(data: bytes, message: str, kinds: dict[int, str]) -> dict[int, Any]:
    """The scalar fields of a small special message, by number, checked against their types."""
    found: dict[int, Any] = {}
    for number, wire, value in _Reader(data, message).fields():
        if number in kinds:
            found[number] = _scalar(wire, value, kinds[number], f"{message}.{number}")
    return found


def _time(data: bytes) -> str | None:
    if not data:
        return None  # Go's zero time: written as null
    # metav1.Time keeps whole seconds only (its JSON never carried more).
    seconds = _parts(data, "Timestamp", {1: "int64", 2: "int32"}).get(1, 0)
    if seconds == ZERO_TIME_SECONDS:
        return None
    return _format_time(seconds, 0, micro=False)


def _micro_time(data: bytes) -> str | None:
    if not data:
        return None
    parts = _parts(data, "Timestamp", {1: "int64", 2: "int32"})
    seconds, nanos = parts.get(1, 0), parts.get(2, 0)
    nanos = int(nanos / 1000) * 1000  # truncated toward zero to microseconds, as MicroTime does
    seconds, nanos = seconds + nanos // 1_000_000_000, nanos % 1_000_000_000
    if seconds == ZERO_TIME_SECONDS and nanos == 0:
        return None
    return _format_time(seconds, nanos, micro=True)


def _format_time(seconds: int, nanos: int, *, micro: bool) -> str:
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise _Malformed("Time.MarshalJSON: year outside of range [0,9999]")
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if micro:
        text += f".{nanos // 1000:06d}"
    return text + "Z"


def _duration(data: bytes) -> str:
    return go_duration(_parts(data, "Duration", {1: "int64"}).get(1, 0))


def go_duration(nanoseconds: int) -> str:
    """A duration in nanoseconds written as Go's ``time.Duration.String`` writes it (``1h2m3.5s``, ``1.5ms``)."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < 1_000_000_000:
        for unit, size in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
            if value < size * 1000:
                return sign + _decimal(value, size) + unit
    hours, rest = divmod(value, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _decimal(value: int, size: int) -> str:
    whole, fraction = divmod(value, size)
    if not fraction:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}." + f"{fraction:0{digits}d}".rstrip("0")


def _int_or_string(data: bytes) -> int | str:
    parts = _parts(data, "IntOrString", {1: "int64", 2: "int32", 3: "string"})
    kind = parts.get(1, 0)
    if kind == 0:
        value: int | str = parts.get(2, 0)
        return value
    if kind == 1:
        text: str = parts.get(3, "")
        return text
    raise _Malformed("json: error calling MarshalJSON for type *intstr.IntOrString: impossible IntOrString.Type")


def _quantity(data: bytes) -> str:
    if not data:
        return "0"  # the zero Quantity
    text: str = _parts(data, "Quantity", {1: "string"}).get(1, "")
    if not QUANTITY_SHAPE.match(text):
        raise _Malformed(f"quantities must match the regular expression '{QUANTITY_SHAPE.pattern}'")
    return text


def _embedded_json(message: str, type_name: str) -> Any:
    def convert(data: bytes) -> Any:
        raw = _parts(data, message, {1: "bytes"}).get(1)
        if not raw:
            return None
        try:
            return json.loads(base64.b64decode(raw), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise _Malformed(f"json: error calling MarshalJSON for type {type_name}: {exc}") from None

    return convert


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


_SPECIAL = {
    TIME: _time,
    MICRO_TIME: _micro_time,
    DURATION: _duration,
    INT_OR_STRING: _int_or_string,
    QUANTITY: _quantity,
    QUANTITY_VALUE: _quantity,
    RAW_EXTENSION: _embedded_json("RawExtension", "runtime.RawExtension"),
    FIELDS_V1: _embedded_json("FieldsV1", "*v1.FieldsV1"),
}
