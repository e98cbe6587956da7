"""PATCH for the mesh's Kubernetes API: the four content types kube-apiserver accepts, and field ownership.

- :func:`merge_patch` — ``application/merge-patch+json`` (RFC 7386; :func:`rfc7386_merge` is the bare RFC).
- :func:`json_patch` — ``application/json-patch+json`` (RFC 6902, with the negative indices Kubernetes'
  json-patch library also accepts).
- :func:`strategic_merge_patch` — ``application/strategic-merge-patch+json``, built-in kinds only, with the
  merge keys of :mod:`.schema_meta` and the ``$patch``, ``$retainKeys``, ``$deleteFromPrimitiveList/…`` and
  ``$setElementOrder/…`` directives.
- :func:`apply` — ``application/apply-patch+yaml`` (server-side apply, structured-merge-diff semantics);
  :func:`record_update` — the ``managedFields`` bookkeeping of create, update and the other patches.

All of them are pure functions over decoded JSON (dict, list, str, int, float, bool, None): they never
modify their arguments, and refuse with :class:`.errors.ApiError` carrying the code and wording
kube-apiserver uses.

Field ownership (``metadata.managedFields``)
--------------------------------------------
Each entry names a manager (``manager``, ``operation`` ``Apply`` or ``Update``, ``apiVersion``, optional
``subresource``), a ``time`` and the set of fields it owns, as ``fieldsV1``: a JSON object tree whose keys
are path elements —

- ``f:<name>`` a field of an object (``f:spec``, ``f:replicas``);
- ``k:<json>`` an item of an associative list, by its key fields (``k:{"name":"app"}``,
  ``k:{"containerPort":80,"protocol":"TCP"}``);
- ``v:<json>`` an item of a set-like list of scalars (``v:"example.com/finalizer"``);
- ``i:<n>`` an item by position (lists without keys, rarely used);
- ``.`` — the path leading here is itself owned, not only things below it (a list item, a map entry).

Leaves are ``{}``. Here a path is a tuple of :data:`PathElement` (``("f", "spec")``, ``("k", '{"name":"a"}')``,
``("v", '"x"')``, ``("i", 0)``); :func:`fields_to_v1` and :func:`fields_from_v1` convert sets of them.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .errors import ApiError, Cause, go_json_type
from .schema_meta import TypeInfo, child_type, has_go_type, item_type, root_type

__all__ = [
    "FieldPath",
    "PathElement",
    "apply",
    "fields_from_v1",
    "fields_of",
    "fields_to_v1",
    "json_patch",
    "merge_patch",
    "path_string",
    "record_update",
    "rfc7386_merge",
    "strategic_merge_patch",
]

PathElement = tuple[str, Any]  # ("f", str) | ("k", str) | ("v", str) | ("i", int)
FieldPath = tuple[PathElement, ...]

# What kube-apiserver says when a request is well-formed but cannot be applied (its generic 422 wording,
# apimachinery NewGenericServerResponse): JSON patch operations that fail are reported this way.
REJECTED: Final = "the server rejected our request due to an error in our request"

# Custom resources have no Go struct tags, so the CRD handler does not offer strategic merge at all.
CRD_PATCH_TYPES: Final = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"

LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"


class _Missing:
    """Marks an absent value (distinct from JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# ---------------------------------------------------------------------------------------------------------
# JSON helpers


def _canonical(value: Any) -> str:
    """Compact JSON with sorted keys: how structured-merge-diff spells keys and values in ``fieldsV1``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1 (Python's == conflates booleans with numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


# ---------------------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)


def rfc7386_merge(target: Any, patch: Any) -> Any:
    """RFC 7386 ``MergePatch(Target, Patch)`` exactly as the RFC's pseudo-code defines it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(result: dict[str, Any], patch: dict[str, Any]) -> None:
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        elif isinstance(value, dict):
            current = result.get(name)
            if not isinstance(current, dict):
                current = result[name] = {}
            _merge_into(current, value)
        else:
            result[name] = copy.deepcopy(value)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch as kube-apiserver does (``application/merge-patch+json``).

    RFC 7386 semantics, except that a patch which is ``null`` or a scalar is refused with 400 "Invalid JSON
    Patch" (Kubernetes' json-patch library cannot merge those into an object)."""
    if patch is None or not isinstance(patch, dict | list):
        raise ApiError(400, "Invalid JSON Patch")
    try:
        return rfc7386_merge(target, patch)
    except RecursionError:
        raise ApiError(400, "Invalid JSON Patch: nested too deeply") from None


# ---------------------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)

_INDEX = re.compile(r"[+-]?[0-9]+")


class _PatchFailed(Exception):
    """An operation that does not apply (reported as 422 by kube-apiserver)."""


def _parse_pointer(pointer: str) -> list[str]:
    """RFC 6901: ``/a~1b/~0c`` → ``["a/b", "~c"]`` (``~1`` is decoded before ``~0``)."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _PatchFailed(f"JSON pointer {pointer!r} does not start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _array_index(token: str, length: int, *, for_insert: bool) -> int:
    """A list index; negative counts from the end as in Kubernetes' json-patch library."""
    if not _INDEX.fullmatch(token):
        raise _PatchFailed(f"value was not a proper array index: {token!r}")
    index = int(token)
    limit = length + 1 if for_insert else length
    if index < 0:
        index += limit
    if not 0 <= index < limit:
        raise _PatchFailed(f"Unable to access invalid index: {token}")
    return index


def _resolve_parent(doc: Any, tokens: list[str]) -> Any:
    """The container holding the last token of ``tokens``."""
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise _PatchFailed("doc is missing path")
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node), for_insert=False)]
        else:
            raise _PatchFailed("doc is missing path")
    if not isinstance(node, dict | list):
        raise _PatchFailed("doc is missing path")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    """The value at ``tokens``. A missing last object member reads as null: Kubernetes' json-patch library
    does so, which lets ``replace`` add a member, ``copy`` copy null and ``test`` compare it with null."""
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        return parent.get(last)
    return parent[_array_index(last, len(parent), for_insert=False)]


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif last == "-":
        parent.append(value)
    else:
        parent.insert(_array_index(last, len(parent), for_insert=True), value)
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        # Kubernetes' json-patch library finds no container for the root.
        raise _PatchFailed("doc is missing path")
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _PatchFailed(f"Unable to remove nonexistent key: {last}")
        return parent.pop(last)
    return parent.pop(_array_index(last, len(parent), for_insert=False))


def _operation_string(operation: dict[str, Any], name: str, op: str) -> str:
    value = operation.get(name, MISSING)
    if not isinstance(value, str):
        raise _PatchFailed(f"{op} operation failed to decode {name}")
    return value


def _apply_operation(doc: Any, operation: Any) -> Any:
    if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
        raise _PatchFailed("Unexpected kind: unknown")
    op = operation["op"]
    if op not in ("add", "remove", "replace", "move", "copy", "test"):
        raise _PatchFailed(f"Unexpected kind: {op}")
    path = _parse_pointer(_operation_string(operation, "path", op))
    if op in ("add", "replace", "test") and "value" not in operation:
        raise _PatchFailed(f"{op} operation, missing value field")
    if op == "add":
        return _add(doc, path, copy.deepcopy(operation["value"]))
    if op == "remove":
        _remove(doc, path)
        return doc
    if op == "replace":
        if not path:
            return copy.deepcopy(operation["value"])
        parent = _resolve_parent(doc, path)
        if isinstance(parent, dict):
            parent[path[-1]] = copy.deepcopy(operation["value"])
        else:
            parent[_array_index(path[-1], len(parent), for_insert=False)] = copy.deepcopy(operation["value"])
        return doc
    if op == "test":
        if not _json_equal(_get(doc, path), operation["value"]):
            raise _PatchFailed(f"testing value {operation['path']} failed")
        return doc
    source = _parse_pointer(_operation_string(operation, "from", op))
    if op == "copy":
        return _add(doc, path, copy.deepcopy(_get(doc, source)))
    # move: a location cannot be moved into one of its own children (RFC 6902 §4.4).
    if path[: len(source)] == source and len(path) > len(source):
        raise _PatchFailed("move operation does not apply: destination is a child of the source")
    if path == source:
        _get(doc, source)
        return doc
    value = _remove(doc, source) if source else doc
    return _add(doc, path, value)


def json_patch(target: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (``application/json-patch+json``) as kube-apiserver does.

    A document that is not a list of operation objects → 400 with the decoder's message (kube-apiserver
    repeats Go's ``json: cannot unmarshal …``). An operation that does not apply — a failing ``test``, a
    missing path, a bad index, an unknown ``op`` — → 422 Invalid with kube-apiserver's generic wording.
    More than 10000 operations → 413, as kube-apiserver limits them."""
    if operations is None:
        return copy.deepcopy(target)  # Go decodes null into an empty patch
    if not isinstance(operations, list):
        raise ApiError(400, f"json: cannot unmarshal {go_json_type(operations)} into Go value of type jsonpatch.Patch")
    for operation in operations:
        if operation is not None and not isinstance(operation, dict):
            raise ApiError(
                400, f"json: cannot unmarshal {go_json_type(operation)} into Go value of type jsonpatch.Operation"
            )
    if len(operations) > 10000:
        raise ApiError(413, f"The allowed maximum operations in a JSON patch is 10000, got {len(operations)}")
    try:
        doc = copy.deepcopy(target)
    except RecursionError:
        raise ApiError(400, "the object is nested too deeply") from None
    for operation in operations:
        try:
            doc = _apply_operation(doc, operation)
        except _PatchFailed as failure:
            # kube-apiserver drops the library's explanation and sends only its generic 422 wording (no
            # causes, so kubectl prints "The request is invalid: the server rejected our request…"); the
            # explanation stays on the exception for our logs.
            raise ApiError(422, REJECTED) from failure
        except RecursionError:
            raise ApiError(400, "the patch is nested too deeply") from None
    return doc


# ---------------------------------------------------------------------------------------------------------
# Strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch)

_PATCH_DIRECTIVE: Final = "$patch"
_RETAIN_KEYS: Final = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST: Final = "$deleteFromPrimitiveList"
_SET_ELEMENT_ORDER: Final = "$setElementOrder"


class _SmpError(Exception):
    """A strategic merge patch Kubernetes refuses. ``code`` is the status kube-apiserver answers; for the
    errors it does not classify (it answers 500 InternalError for them) we answer 422: the patch is at
    fault, not the server."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def _bad_arg(expected: str, actual: Any) -> _SmpError:
    return _SmpError(f"expected a {expected}, but received a {go_json_type(actual)}")


def _no_merge_key(item: Any, key: str) -> _SmpError:
    return _SmpError(f"map: {_canonical(item)} does not contain declared merge key: {key}")


def _go_equal(a: Any, b: Any) -> bool:
    """Go's ``==`` on decoded JSON values: an int and a float are different values."""
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return _canonical(a) == _canonical(b)
    return type(a) is type(b) and bool(a == b)


def _shape(value: Any) -> str:
    return "map" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """Strip ``$patch`` maps out of a value being inserted as-is; False when ``value`` itself is one."""
    if isinstance(value, dict):
        if _PATCH_DIRECTIVE in value:
            return None, False
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            new, keep = _remove_directives(item)
            if keep:
                cleaned[key] = new
        return cleaned, True
    if isinstance(value, list):
        kept = [_remove_directives(item) for item in value]
        return [new for new, keep in kept if keep], True
    return value, True


def _discard_nulls(value: Any) -> Any:
    """The value without null object members (an unmatched null in a patch means nothing)."""
    if isinstance(value, dict):
        return {key: _discard_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_discard_nulls(item) for item in value]
    return value


def _as_go_decodes(value: Any) -> Any:
    """The patched object as kube-apiserver keeps it after decoding it into the Go type: null members are
    unset and ``$``-prefixed members (directives strategicpatch left in new items) are unknown fields."""
    if isinstance(value, dict):
        return {
            key: _as_go_decodes(item) for key, item in value.items()
            if item is not None and not key.startswith("$")
        }
    if isinstance(value, list):
        return [_as_go_decodes(item) for item in value]
    return value


def _extract_key(key: str, prefix: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        if prefix == _DELETE_FROM_PRIMITIVE_LIST:
            raise _SmpError("invalid patch format of primitive list", 400)
        raise _SmpError("invalid patch format of setElementOrder list", 400)
    return rest


def _smp_map(original: dict[str, Any], patch: dict[str, Any], schema: TypeInfo) -> dict[str, Any]:
    """``mergeMap``: merge ``patch`` into ``original`` (both owned by the caller: modified in place)."""
    if _PATCH_DIRECTIVE in patch:
        directive = patch[_PATCH_DIRECTIVE]
        if directive == "replace":
            return {key: value for key, value in patch.items() if key != _PATCH_DIRECTIVE}
        if directive == "delete":
            return {}
        raise _SmpError(f"unknown patch type: {directive} in map: {_canonical(patch)}")
    _apply_retain_keys(original, patch)
    _merge_set_element_order(original, patch, schema)
    for raw_key, patch_value in list(patch.items()):
        key = raw_key
        is_delete_list = raw_key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = _extract_key(raw_key, _DELETE_FROM_PRIMITIVE_LIST)
        if patch_value is None:
            original.pop(key, None)
            continue
        current = original.get(key, MISSING)
        if current is MISSING or _shape(current) != _shape(patch_value) or _shape(patch_value) == "scalar":
            # A deletion list for a list the object lacks deletes nothing.
            if is_delete_list and (current is MISSING or _shape(current) != _shape(patch_value)):
                continue
            # A value the object lacks is taken whole, minus the maps carrying $patch.
            new, keep = _remove_directives(patch_value)
            if keep:
                original[key] = new
            else:
                original.pop(key, None)
            continue
        field_type = child_type(schema, key)
        if isinstance(patch_value, dict):
            replace = field_type.smp_replace
            original[key] = patch_value if replace else _smp_map(original[key], patch_value, field_type)
        else:
            original[key] = _smp_list_field(original[key], patch_value, field_type, is_delete_list)
    return original


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """``$retainKeys``: keep only the listed keys of ``original`` (a union member being switched)."""
    if _RETAIN_KEYS not in patch:
        return
    retained = patch.pop(_RETAIN_KEYS)
    if not isinstance(retained, list):
        raise _SmpError("invalid patch format of retainKeys", 400)
    allowed = {_canonical(item) for item in retained}
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)):
            continue
        if _canonical(key) not in allowed:
            raise _SmpError("invalid patch format of retainKeys", 400)
    for key in list(original):
        if _canonical(key) not in allowed:
            del original[key]


def _element_kind(*lists: list[Any]) -> str:
    """``sliceElementType``: all items must be of one JSON kind, and not lists."""
    kind = ""
    for items in lists:
        for item in items:
            shape = "map" if isinstance(item, dict) else "list" if isinstance(item, list) else type(item).__name__
            if not kind:
                if shape == "list":
                    raise _SmpError("lists of lists are not supported")
                kind = shape
            elif shape != kind:
                raise _SmpError(f"list element types are not identical: {_canonical(list(lists))}")
    if not kind:
        raise _SmpError("no elements in any of the given slices")
    return kind


def _merge_value(item: Any, merge_key: str, kind: str) -> Any:
    if kind == "map":
        return item.get(merge_key) if isinstance(item, dict) else None
    return item


def _index_of(items: list[Any], wanted: Any, merge_key: str, kind: str) -> int:
    target = _merge_value(wanted, merge_key, kind)
    for position, item in enumerate(items):
        if _go_equal(_merge_value(item, merge_key, kind), target):
            return position
    return -1


def _require_merge_key(merge_key: str, *lists: list[Any]) -> None:
    for items in lists:
        for item in items:
            if not isinstance(item, dict):
                raise _bad_arg("map", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)


def _split_deletions(items: list[Any]) -> tuple[list[Any], list[Any]]:
    keep: list[Any] = []
    delete: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg("map", item)
        (delete if item.get(_PATCH_DIRECTIVE) == "delete" else keep).append(item)
    return keep, delete


def _sort_by_order(items: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    """``normalizeSliceOrder``: items in the order ``order`` gives them (deletions last)."""
    deletions: list[Any] = []
    if kind == "map":
        _require_merge_key(merge_key, items, order)
        items, deletions = _split_deletions(items)
    result = list(items)

    def less(a: Any, b: Any) -> bool:
        ia = _index_of(order, a, merge_key, kind)
        ib = _index_of(order, b, merge_key, kind)
        return ia < ib if ia >= 0 and ib >= 0 else True

    # Go's stable sort is an insertion sort for short lists; the comparator above is not a strict order
    # for items missing from ``order``, so the same algorithm is needed to land them where Go does.
    for i in range(1, len(result)):
        j = i
        while j > 0 and less(result[j], result[j - 1]):
            result[j], result[j - 1] = result[j - 1], result[j]
            j -= 1
    return result + deletions


def _merge_sorted(left: list[Any], right: list[Any], server_order: list[Any], merge_key: str, kind: str) -> list[Any]:
    """``mergeSortedSlice``: interleave server-only items (left) with patch items (right), keeping each
    list's order and placing a server-only item before a patch item when the live list had it first."""
    result: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            result.append(right[j])
            j += 1
        elif j >= len(right):
            result.append(left[i])
            i += 1
        else:
            li = _index_of(server_order, left[i], merge_key, kind)
            ri = _index_of(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                result.append(left[i])
                i += 1
            else:
                result.append(right[j])
                j += 1
    return result


def _normalize_order(
    patch_items: list[Any], server_only: list[Any], patch_order: list[Any], server_order: list[Any],
    merge_key: str, kind: str,
) -> list[Any]:
    patch_items = _sort_by_order(patch_items, patch_order, merge_key, kind)
    server_only = _sort_by_order(server_only, server_order, merge_key, kind)
    return _merge_sorted(server_only, patch_items, server_order, merge_key, kind)


def _find_by_key(items: list[Any], merge_key: str, value: Any) -> int:
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise _SmpError(f"value for key {position} is not a map")
        if merge_key in item and _go_equal(item[merge_key], value):
            return position
    return -1


def _partition(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Items of ``merged`` that ``by`` names (in the patch), and the others (server only)."""
    in_patch: list[Any] = []
    server_only: list[Any] = []
    for item in merged:
        if merge_key:
            if not isinstance(item, dict):
                raise _bad_arg("map", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            found = _find_by_key(by, merge_key, item[merge_key]) >= 0
        else:
            found = any(_go_equal(item, other) for other in by)
        (in_patch if found else server_only).append(item)
    return in_patch, server_only


def _smp_list_field(
    original: list[Any], patch: list[Any], schema: TypeInfo, is_delete_list: bool, alias: list[Any] | None = None
) -> list[Any]:
    """``mergeSliceHandler``: lists declared ``patchStrategy=merge`` merge, all others are replaced."""
    if schema.smp_merge or is_delete_list:
        return _smp_list(original, patch, schema, schema.smp_key, is_delete_list, alias)
    return patch


def _smp_list(
    original: list[Any], patch: list[Any], schema: TypeInfo, merge_key: str, is_delete_list: bool,
    alias: list[Any] | None = None,
) -> list[Any]:
    """``mergeSlice``: merge two lists item by item (by ``merge_key``, or as sets of scalars).

    ``alias``, when given, is a copy of ``original`` that ends up as Go's view of the live list after the
    merge: Go deletes and appends in place in the live list's array, and ``$setElementOrder`` then orders by
    that view (see :func:`_merge_set_element_order`)."""
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if is_delete_list:
            return [item for item in original if not any(_go_equal(item, gone) for gone in patch)]
        merged: list[Any] = []
        for item in original + patch:
            if not any(_go_equal(item, seen) for seen in merged):
                merged.append(item)
        in_patch, server_only = _partition(merged, patch, "")
        return _normalize_order(in_patch, server_only, patch, original, "", kind)
    if not merge_key:
        raise _SmpError("cannot merge lists without merge key")
    original, plain, shared = _smp_special_items(original, patch, merge_key, alias)
    merged = list(original)
    for item in plain:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        position = _find_by_key(merged, merge_key, item[merge_key])
        if position >= 0:
            merged[position] = _smp_map(merged[position], item, item_type(schema))
            continue
        # Appended as sent: directives inside it are not interpreted (Go's decoder drops them later).
        if shared and alias is not None and len(merged) < len(alias):
            alias[len(merged)] = item  # Go's append writes into the live array while it has room
        merged.append(item)
    in_patch, server_only = _partition(merged, plain, merge_key)
    return _normalize_order(in_patch, server_only, plain, original, merge_key, kind)


def _smp_special_items(
    original: list[Any], patch: list[Any], merge_key: str, alias: list[Any] | None
) -> tuple[list[Any], list[Any], bool]:
    """``$patch`` items of a merging list: ``delete`` removes the item with that key, ``replace`` makes the
    rest of the patch list the whole list. Returns the list to merge into, the plain patch items, and
    whether the former still shares Go's array with the live list."""
    plain: list[Any] = []
    replace = False
    current = list(original)
    for item in patch:
        if _PATCH_DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_PATCH_DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            while (position := _find_by_key(current, merge_key, item[merge_key])) >= 0:
                del current[position]
                if alias is not None:
                    # append(s[:k], s[k+1:]...) shifts the tail left; the last slot keeps its old item.
                    alias[position : len(current)] = current[position:]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _SmpError("merging lists cannot yet be specified in the patch")
        else:
            raise _SmpError(f"unknown patch type: {directive} in map: {_canonical(item)}")
    if replace:
        return plain, [], False
    return current, plain, True


def _merge_set_element_order(original: dict[str, Any], patch: dict[str, Any], schema: TypeInfo) -> None:
    """``$setElementOrder/<list>``: merge that list now and order it as the directive says (the directive
    wins over the order in the patch list, which wins over the live order)."""
    for key, order in list(patch.items()):
        if not key.startswith(_SET_ELEMENT_ORDER):
            continue
        del patch[key]
        if not isinstance(order, list):
            raise _bad_arg("array", order)
        list_key = _extract_key(key, _SET_ELEMENT_ORDER)
        live = original.get(list_key, MISSING)
        patched = patch.get(list_key, MISSING)
        if live is not MISSING and not isinstance(live, list):
            raise _bad_arg("array", live)
        if patched is not MISSING and not isinstance(patched, list):
            raise _bad_arg("array", patched)
        field_type = child_type(schema, list_key)
        merge_key = field_type.smp_key
        _check_order(patched if isinstance(patched, list) else [], order, merge_key)
        if isinstance(live, list) and not isinstance(patched, list):
            merged: list[Any] = live
        elif isinstance(patched, list) and not isinstance(live, list):
            merged = _remove_directives(patched)[0]
        elif isinstance(live, list) and isinstance(patched, list):
            live_view = list(live)
            merged = _smp_list_field(list(live), patched, field_type, False, live_view)
        else:
            continue
        live_list = live if isinstance(live, list) else []
        kind = _element_kind(live_list, patched if isinstance(patched, list) else [])
        in_order, server_only = _partition(merged, order, merge_key)
        server_order = live_view if isinstance(live, list) and isinstance(patched, list) else live_list
        original[list_key] = _normalize_order(in_order, server_only, order, server_order, merge_key, kind)
        patch.pop(list_key, None)


def _check_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """``validatePatchWithSetOrderList``: the patch list must follow the directive's order."""
    if not order or not patch_list:
        return
    items = _split_deletions(patch_list)[0] if merge_key else patch_list
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        if isinstance(items[pi], dict) and _PATCH_DIRECTIVE in items[pi]:
            pi += 1
            continue
        if merge_key:
            for side in (items[pi], order[oi]):
                if not isinstance(side, dict):
                    raise _bad_arg("map", side)
                if merge_key not in side:
                    raise _no_merge_key(side, merge_key)
            same = _go_equal(items[pi][merge_key], order[oi][merge_key])
        else:
            same = _go_equal(items[pi], order[oi])
        if same:
            pi += 1
        oi += 1
    if pi < len(items) and oi >= len(order):
        raise _SmpError(
            f"The order in patch list:\n{_canonical(patch_list)}\n doesn't match $setElementOrder list:\n"
            f"{_canonical(order)}\n"
        )


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """Apply a strategic merge patch (``application/strategic-merge-patch+json``) to an object of a built-in
    kind, with the merge keys and strategies Kubernetes declares for it.

    Custom resources → 415, as kube-apiserver's CRD handler answers (it does not offer the content type).
    A malformed directive → 400 with strategicpatch's message; other unmergeable patches → 422."""
    if not has_go_type(api_version):
        raise ApiError(
            415, f"the body of the request was in an unknown format - accepted media types include: {CRD_PATCH_TYPES}"
        )
    if not isinstance(patch, dict):
        raise ApiError(
            400, f"json: cannot unmarshal {go_json_type(patch)} into Go value of type map[string]interface {{}}"
        )
    if not isinstance(target, dict):
        raise ApiError(400, "invalid JSON document")
    try:
        merged = _smp_map(copy.deepcopy(target), copy.deepcopy(patch), root_type(api_version, kind))
        result: dict[str, Any] = _as_go_decodes(merged)
    except _SmpError as error:
        message = REJECTED if str(error) == "lists of lists are not supported" else str(error)
        raise ApiError(error.code, message) from error
    except RecursionError:
        raise ApiError(400, "the patch is nested too deeply") from None
    return result


# ---------------------------------------------------------------------------------------------------------
# Field paths and fieldsV1


def path_string(path: FieldPath) -> str:
    """A path as Kubernetes prints it in conflicts: ``.spec.template.spec.containers[name="app"].image``."""
    parts: list[str] = []
    for kind, value in path:
        if kind == "f":
            parts.append(f".{value}")
        elif kind == "k":
            fields = json.loads(value)
            parts.append("[" + ",".join(f"{name}={_canonical(fields[name])}" for name in sorted(fields)) + "]")
        elif kind == "v":
            parts.append(f"[={value}]")
        else:
            parts.append(f"[{value}]")
    return "".join(parts)


def _element_text(element: PathElement) -> str:
    kind, value = element
    return f"{kind}:{value}"


def _element_order(element: PathElement) -> tuple[int, str, int]:
    """structured-merge-diff's order: field names, then keys, then values, then indices."""
    kind, value = element
    rank = {"f": 0, "k": 1, "v": 2, "i": 3}[kind]
    return (rank, value if kind != "i" else "", value if kind == "i" else 0)


def fields_to_v1(fields: Iterable[FieldPath]) -> dict[str, Any]:
    """Encode a set of paths as ``fieldsV1`` (see the module docstring)."""
    tree: dict[PathElement, Any] = {}
    members: set[FieldPath] = set()
    for path in fields:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        members.add(path)

    def emit(node: dict[PathElement, Any], prefix: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if prefix and prefix in members and node:
            out["."] = {}
        for element in sorted(node, key=_element_order):
            out[_element_text(element)] = emit(node[element], (*prefix, element))
        return out

    return emit(tree, ())


def fields_from_v1(encoded: Mapping[str, Any]) -> set[FieldPath]:
    """Decode ``fieldsV1`` into a set of paths; raises ValueError on a malformed document."""
    result: set[FieldPath] = set()

    def walk(node: Mapping[str, Any], prefix: FieldPath) -> None:
        for text, child in node.items():
            if not isinstance(child, Mapping):
                raise ValueError(f"fieldsV1 entry {text!r} is not an object")
            if text == ".":
                if prefix:
                    result.add(prefix)
                continue
            kind, sep, rest = text.partition(":")
            if not sep or kind not in ("f", "k", "v", "i"):
                raise ValueError(f"unknown fieldsV1 path element {text!r}")
            element: PathElement
            if kind == "f":
                element = ("f", rest)
            elif kind == "i":
                element = ("i", int(rest))
            else:
                element = (kind, _canonical(json.loads(rest)))
            path = (*prefix, element)
            if not child:
                result.add(path)
            walk(child, path)

    walk(encoded, ())
    return result


class _SchemaError(Exception):
    """An object that does not fit its schema (an associative list item without its key…)."""


def _item_element(item: Any, schema: TypeInfo, path: FieldPath) -> PathElement:
    """The path element naming ``item`` in a granular list: its key fields, or its value for sets."""
    if schema.ssa_list == "set":
        if isinstance(item, dict | list):
            raise _SchemaError(f"{path_string(path)}: a set list holds only scalars")
        return ("v", _canonical(item))
    if not isinstance(item, dict):
        raise _SchemaError(f"{path_string(path)}: expected an object in an associative list")
    key: dict[str, Any] = {}
    for name in schema.ssa_keys:
        if name in item and item[name] is not None:
            key[name] = item[name]
        elif name in schema.key_defaults:
            key[name] = schema.key_defaults[name]
        else:
            raise _SchemaError(
                f"{path_string(path)}: associative list with keys has an element that omits key field "
                f'"{name}" (and doesn\'t have default value)'
            )
    return ("k", _canonical(key))


def _granular_list(schema: TypeInfo) -> bool:
    return schema.kind == "list" and schema.ssa_list in ("map", "set")


def _index_items(items: list[Any], schema: TypeInfo, path: FieldPath) -> dict[PathElement, Any]:
    """Items by their path element (the first of duplicates wins)."""
    indexed: dict[PathElement, Any] = {}
    for item in items:
        indexed.setdefault(_item_element(item, schema, path), item)
    return indexed


def _to_field_set(value: Any, schema: TypeInfo, path: FieldPath, out: set[FieldPath]) -> None:
    """structured-merge-diff ``ToFieldSet``: the paths a configuration sets."""
    if isinstance(value, dict):
        if schema.atomic:
            out.add(path)
            return
        for key, child in value.items():
            child_path = (*path, ("f", key))
            _to_field_set(child, child_type(schema, key), child_path, out)
            if child is None or child == {} or schema.kind == "map":
                out.add(child_path)
    elif isinstance(value, list):
        if not _granular_list(schema):
            out.add(path)
            return
        for item in value:
            element = _item_element(item, schema, path)
            item_path = (*path, element)
            _to_field_set(item, item_type(schema), item_path, out)
            out.add(item_path)
    elif value is not None:
        out.add(path)


def fields_of(obj: Mapping[str, Any], api_version: str = "", kind: str = "") -> set[FieldPath]:
    """The paths an object (or an apply configuration) sets, as server-side apply counts them (the type is
    the object's own ``apiVersion``/``kind`` unless given)."""
    out: set[FieldPath] = set()
    schema = root_type(api_version or str(obj.get("apiVersion", "")), kind or str(obj.get("kind", "")))
    try:
        _to_field_set(dict(obj), schema, (), out)
    except _SchemaError as error:
        raise ApiError(422, str(error)) from None
    return out


@dataclass
class _Comparison:
    added: set[FieldPath]
    removed: set[FieldPath]
    modified: set[FieldPath]

    def changed(self) -> set[FieldPath]:
        return self.added | self.modified


def _compare(old: Any, new: Any, schema: TypeInfo, path: FieldPath, result: _Comparison, tracked: bool) -> None:
    """structured-merge-diff ``Compare``. ``tracked`` is False for struct fields: Go always has them (they
    are not pointers), so they are never added or removed themselves, only what they hold."""
    old_present = old is not MISSING and old is not None
    new_present = new is not MISSING and new is not None

    def leaf() -> None:
        if not old_present:
            result.added.add(path)
        elif not new_present:
            result.removed.add(path)
        elif not _json_equal(old, new):
            result.modified.add(path)

    if isinstance(old, dict) or isinstance(new, dict):
        old_map = old if isinstance(old, dict) else {}
        new_map = new if isinstance(new, dict) else {}
        mismatched = (old_present and not isinstance(old, dict)) or (new_present and not isinstance(new, dict))
        if schema.atomic or mismatched or (not old_map and not new_map):
            leaf()
            return
        for key in {**old_map, **new_map}:
            field_type = child_type(schema, key)
            _compare(old_map.get(key, MISSING), new_map.get(key, MISSING), field_type, (*path, ("f", key)), result,
                     tracked=schema.kind == "map" or field_type.kind == "map")
    elif isinstance(old, list) or isinstance(new, list):
        old_list = old if isinstance(old, list) else []
        new_list = new if isinstance(new, list) else []
        mismatched = (old_present and not isinstance(old, list)) or (new_present and not isinstance(new, list))
        if not _granular_list(schema) or mismatched or (not old_list and not new_list):
            leaf()
            return
        old_items = _index_items(old_list, schema, path)
        new_items = _index_items(new_list, schema, path)
        for element in {**old_items, **new_items}:
            _compare(old_items.get(element, MISSING), new_items.get(element, MISSING), item_type(schema),
                     (*path, element), result, tracked=True)
        return
    else:
        leaf()
        return
    if tracked:
        if not old_present:
            result.added.add(path)
        elif not new_present:
            result.removed.add(path)


def _merge(live: Any, config: Any, schema: TypeInfo, path: FieldPath) -> Any:
    """structured-merge-diff ``Merge``: the configuration wins, granular maps and lists merge."""
    if live is MISSING or live is None:
        return _discard_nulls(config)
    if isinstance(live, dict) and isinstance(config, dict) and not schema.atomic:
        merged = dict(live)
        for key, value in config.items():
            if value is None:
                # Go decodes null as "unset": the field ends up absent (and the applier owns that).
                merged.pop(key, None)
            else:
                merged[key] = _merge(live.get(key, MISSING), value, child_type(schema, key), (*path, ("f", key)))
        return merged
    if isinstance(live, list) and isinstance(config, list) and _granular_list(schema):
        live_items = [(_item_element(item, schema, path), item) for item in live]
        live_index: dict[PathElement, Any] = {}
        for element, item in live_items:
            live_index.setdefault(element, item)
        config_items = _index_items(config, schema, path)
        pending = list(config_items)
        done: set[PathElement] = set()
        result: list[Any] = []

        def emit_next() -> None:
            element = pending.pop(0)
            result.append(_merge(live_index.get(element, MISSING), config_items[element], item_type(schema),
                                 (*path, element)))
            done.add(element)

        # Live-only items keep their place; the configuration's items come in its order, each shared one
        # no later than where the live list had it.
        for element, item in live_items:
            if element not in config_items:
                result.append(item)
                continue
            while pending and element not in done:
                emit_next()
        while pending:
            emit_next()
        return result
    return _discard_nulls(config)


def _present_paths(value: Any, schema: TypeInfo, path: FieldPath, out: set[FieldPath]) -> None:
    """Every path ``value`` has, containers included."""
    out.add(path)
    if isinstance(value, dict) and not schema.atomic:
        for key, child in value.items():
            _present_paths(child, child_type(schema, key), (*path, ("f", key)), out)
    elif isinstance(value, list) and _granular_list(schema):
        for item in value:
            _present_paths(item, item_type(schema), (*path, _item_element(item, schema, path)), out)


def _prefixes(paths: Iterable[FieldPath]) -> set[FieldPath]:
    """Every strict prefix of every path."""
    return {path[:length] for path in paths for length in range(len(path))}


def _remove_items(value: Any, doomed: set[FieldPath], doomed_parents: set[FieldPath], keep: set[FieldPath],
                  schema: TypeInfo, path: FieldPath) -> Any:
    """structured-merge-diff ``RemoveItems``: drop the doomed fields and items; a map or list left empty by
    the removal disappears too (Go decodes it as unset) unless it is in ``keep`` (the configuration being
    applied has it, ``labels: {}``)."""
    if isinstance(value, dict) and not schema.atomic and value:
        kept: dict[str, Any] = {}
        for key, child in value.items():
            child_path = (*path, ("f", key))
            if child_path in doomed:
                continue
            if child_path in doomed_parents:
                child = _remove_items(child, doomed, doomed_parents, keep, child_type(schema, key), child_path)
                if child is MISSING:
                    continue
            kept[key] = child
        return kept if kept or path in keep else MISSING
    if isinstance(value, list) and _granular_list(schema) and value:
        items: list[Any] = []
        for item in value:
            item_path = (*path, _item_element(item, schema, path))
            if item_path in doomed:
                continue
            if item_path in doomed_parents:
                item = _remove_items(item, doomed, doomed_parents, keep, item_type(schema), item_path)
                if item is MISSING:
                    continue
            items.append(item)
        return items if items or path in keep else MISSING
    return value


# ---------------------------------------------------------------------------------------------------------
# managedFields

# Fields no manager owns (k8s.io/apimachinery managedfields stripmeta.go): exact paths.
_STRIPPED: Final[frozenset[FieldPath]] = frozenset(
    {(("f", "apiVersion"),), (("f", "kind"),), (("f", "metadata"),)}
    | {
        (("f", "metadata"), ("f", name))
        for name in ("name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
                     "managedFields", "resourceVersion")
    }
)


def _reset_prefixes(subresource: str) -> tuple[FieldPath, ...]:
    """What a request to this (sub)resource cannot change, so nobody comes to own it through it: the status
    through the main resource, the spec through ``status`` (the registry strategies' reset fields)."""
    if subresource == "status":
        return ((("f", "spec"),),)
    if subresource == "":
        return ((("f", "status"),),)
    return ()


def _tracked(paths: Iterable[FieldPath], subresource: str) -> set[FieldPath]:
    resets = _reset_prefixes(subresource)
    return {
        path for path in paths
        if path not in _STRIPPED and not any(path[: len(reset)] == reset for reset in resets)
    }


@dataclass
class _Manager:
    """One ``managedFields`` entry."""

    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: set[FieldPath]

    def identity(self) -> tuple[str, str, str, str]:
        # Appliers are one manager whatever version they apply with; updaters are one per version.
        version = self.api_version if self.operation != "Apply" else ""
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """How Kubernetes names the manager in conflict messages."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def encode(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time is not None:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = fields_to_v1(self.fields)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def _decode_managers(obj: Mapping[str, Any] | None) -> list[_Manager]:
    """The entries of ``metadata.managedFields``; malformed ones make Kubernetes start over, and so do we."""
    metadata = obj.get("metadata") if obj else None
    entries = metadata.get("managedFields") if isinstance(metadata, dict) else None
    if not isinstance(entries, list):
        return []
    managers: list[_Manager] = []
    try:
        for entry in entries:
            if not isinstance(entry, dict):
                return []
            fields = entry.get("fieldsV1") or {}
            if not isinstance(fields, dict) or entry.get("fieldsType", "FieldsV1") != "FieldsV1":
                return []
            time = entry.get("time")
            managers.append(_Manager(
                manager=str(entry.get("manager", "")),
                operation=str(entry.get("operation", "")),
                api_version=str(entry.get("apiVersion", "")),
                subresource=str(entry.get("subresource", "")),
                time=time if isinstance(time, str) else None,
                fields=fields_from_v1(fields),
            ))
    except (ValueError, TypeError):
        return []
    # Two entries for one identity cannot be told apart: keep the union under the first.
    merged: dict[tuple[str, str, str, str], _Manager] = {}
    for manager in managers:
        if manager.identity() in merged:
            merged[manager.identity()].fields |= manager.fields
        else:
            merged[manager.identity()] = manager
    return list(merged.values())


def _encode_managers(managers: Iterable[_Manager]) -> list[dict[str, Any]]:
    kept = [manager for manager in managers if manager.fields]
    kept.sort(key=lambda m: (m.operation, m.time or "", m.manager, m.api_version, m.subresource))
    return [manager.encode() for manager in kept]


def _without_managed_fields(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    result = copy.deepcopy(dict(obj)) if obj else {}
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return result


def _with_managed_fields(obj: dict[str, Any], managers: Iterable[_Manager]) -> dict[str, Any]:
    encoded = _encode_managers(managers)
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        if not encoded:
            return obj
        metadata = obj["metadata"] = {}
    if encoded:
        metadata["managedFields"] = encoded
    else:
        metadata.pop("managedFields", None)
    return obj


def _compare_objects(old: Any, new: Any, schema: TypeInfo, subresource: str) -> _Comparison:
    result = _Comparison(set(), set(), set())
    _compare(old, new, schema, (), result, tracked=False)
    return _Comparison(_tracked(result.added, subresource), _tracked(result.removed, subresource),
                       _tracked(result.modified, subresource))


def _sorted_paths(paths: Iterable[FieldPath]) -> list[FieldPath]:
    return sorted(paths, key=lambda path: [_element_order(element) for element in path])


def _conflict_error(conflicts: dict[tuple[str, str, str, str], tuple[_Manager, set[FieldPath]]]) -> ApiError:
    """409 Conflict worded as kube-apiserver words it (managedfields internal/conflict.go)."""
    ordered = sorted(conflicts.values(), key=lambda pair: pair[0].identity())
    causes: list[Cause] = []
    lines: list[str] = []
    for manager, paths in ordered:
        lines.append(f"conflicts with {manager.describe()}:")
        for path in _sorted_paths(paths):
            causes.append(Cause(path_string(path), f"conflict with {manager.describe()}", "FieldManagerConflict"))
            lines.append(f"- {path_string(path)}")
    if len(causes) == 1:
        message = f"Apply failed with 1 conflict: {causes[0].message}: {causes[0].field}"
    else:
        message = f"Apply failed with {len(causes)} conflicts: " + "\n".join(lines)
    return ApiError(409, message, reason="Conflict", causes=tuple(causes))


def _allowed_by_last_applied(live: dict[str, Any], schema: TypeInfo, api_version: str) -> set[FieldPath]:
    """Fields ``kubectl`` may take over without ``--force-conflicts`` (managedfields lastappliedmanager.go):
    those its client-side ``last-applied-configuration`` set and the live object still has as set there."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    if not isinstance(text, str) or not text:
        return set()
    try:
        last_applied = json.loads(text)
        if not isinstance(last_applied, dict) or last_applied.get("apiVersion") != api_version:
            return set()
        fields: set[FieldPath] = set()
        _to_field_set(last_applied, schema, (), fields)
        changes = _Comparison(set(), set(), set())
        _compare(last_applied, live, schema, (), changes, tracked=False)
    except (ValueError, _SchemaError):
        return set()
    return fields - changes.added - changes.modified - changes.removed


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    api_version: str,
    kind: str,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """Server-side apply ``applied`` (the decoded ``application/apply-patch+yaml`` body) as ``manager``.

    Returns the new object with ``metadata.managedFields`` updated (``live`` None creates). The applier
    comes to own exactly the fields it applied; the fields it applied last time and no longer does are
    removed unless another manager owns them; setting a field another manager owns to a different value is
    a 409 Conflict unless ``force``, which takes the field over. Applying the same configuration again
    returns an object equal to ``live``."""
    if not isinstance(applied, dict):
        raise ApiError(400, f"error decoding patch: expected an object, got {go_json_type(applied)}")
    if applied.get("apiVersion", "") != api_version:
        raise ApiError(
            400,
            "Incorrect version specified in apply patch. "
            f"Specified patch version: {applied.get('apiVersion', '')}, expected: {api_version}",
        )
    if applied.get("kind", kind) != kind:
        raise ApiError(400, f"Incorrect kind specified in apply patch. Specified patch kind: {applied.get('kind')},"
                            f" expected: {kind}")
    metadata = applied.get("metadata")
    if isinstance(metadata, dict) and metadata.get("managedFields") is not None:
        raise ApiError(400, "metadata.managedFields must be nil")
    schema = root_type(api_version, kind)
    live_obj = _without_managed_fields(live)
    managers = _decode_managers(live)
    identity = (manager, "Apply", "", subresource)
    try:
        applied_fields: set[FieldPath] = set()
        _to_field_set(applied, schema, (), applied_fields)
        new_fields = _tracked(applied_fields, subresource)
        merged = _merge(live_obj, applied, schema, ())
        previous = next((m for m in managers if m.identity() == identity), None)
        others = [m for m in managers if m.identity() != identity]
        if previous is not None:
            owned = new_fields.union(*(m.fields for m in others))
            still_needed = owned | _prefixes(owned)
            doomed = {path for path in previous.fields - owned if path not in still_needed}
            if doomed:
                present: set[FieldPath] = set()
                _present_paths(applied, schema, (), present)
                pruned = _remove_items(merged, doomed, _prefixes(doomed), present, schema, ())
                merged = pruned if isinstance(pruned, dict) else {}
        changes = _compare_objects(live_obj, merged, schema, subresource)
    except _SchemaError as error:
        raise ApiError(422, str(error)) from None
    conflicts = {m.identity(): (m, m.fields & changes.changed()) for m in others if m.fields & changes.changed()}
    if conflicts and not force and manager == "kubectl":
        allowed = _allowed_by_last_applied(live_obj, schema, api_version)
        conflicts = {key: (m, paths - allowed) for key, (m, paths) in conflicts.items() if paths - allowed}
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for other in others:
        other.fields -= changes.changed() | changes.removed
    unchanged = _json_equal(merged, live_obj)
    time = previous.time if previous is not None and unchanged else now
    applier = _Manager(manager, "Apply", api_version, subresource, time, new_fields)
    result = live_obj if unchanged else merged
    return _with_managed_fields(result, [*others, applier])


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    now: str,
    operation: str = "Update",
    subresource: str = "",
) -> dict[str, Any]:
    """``managedFields`` bookkeeping for create, update and the non-apply patches: ``new`` is the object about
    to be stored, ``old`` the stored one (None on create).

    ``manager`` comes to own every field it added or changed (all fields on create) and its entry's time
    moves to ``now``; other managers lose the fields whose values changed or that were removed. A client
    that sends ``managedFields`` itself replaces them (``[{}]`` clears them), as with Kubernetes. Returns a
    copy of ``new`` with the entries written; never raises (an object that does not fit its schema keeps
    ``old``'s entries)."""
    kind = str(new.get("kind", ""))
    schema = root_type(str(new.get("apiVersion", api_version)), kind)
    sent = (new.get("metadata") or {}).get("managedFields") if isinstance(new.get("metadata"), dict) else None
    managers = _decode_managers(new if isinstance(sent, list) and sent else old)
    old_obj = _without_managed_fields(old)
    new_obj = _without_managed_fields(new)
    try:
        changes = _compare_objects(old_obj, new_obj, schema, subresource)
    except _SchemaError:
        # Like kube-apiserver's UpdateNoErrors: bookkeeping never fails a write (validation judges the
        # object); the entries stay as they were.
        return _with_managed_fields(new_obj, _decode_managers(old))
    version = api_version if operation != "Apply" else ""
    identity = (manager, operation, version, subresource)
    mine = next((m for m in managers if m.identity() == identity), None)
    for entry in managers:
        entry.fields -= changes.changed() | changes.removed
    taken = changes.changed()
    if taken:
        if mine is None:
            mine = _Manager(manager, operation, api_version, subresource, now, set())
            managers.append(mine)
        mine.fields |= taken
        mine.time = now
    return _with_managed_fields(new_obj, managers)
