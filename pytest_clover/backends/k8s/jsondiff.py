"""The change from one version of an object to another, as a JSON patch that refuses to clobber someone else's edit.

A fault is merged into an object someone else owns (the app's VirtualService). Between our read and our write
they may change it too. Sending our whole document back would undo their change; a JSON merge patch would
replace whole lists (every route of ``spec.http``). Instead we send only the paths we change, each guarded by a
``test`` of the value we saw there: their edits elsewhere stay, and an edit of the very fields we change makes
the patch fail instead of being overwritten.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["MANAGED_METADATA", "changed_paths", "diff", "guarded_patch", "strip_server_fields", "value_at"]

MANAGED_METADATA = ("labels", "annotations")
"""The metadata a document carries that we compare and restore; the rest is the server's (uid, resourceVersion,
managedFields, creationTimestamp, generation) or identity (name, namespace)."""


def strip_server_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object a user writes: apiVersion, kind, name, namespace, labels, annotations, spec (and the
    other top-level fields, e.g. a ConfigMap's data), without status and server-set metadata."""
    out = {k: copy.deepcopy(v) for k, v in doc.items() if k not in ("status", "metadata")}
    meta = doc.get("metadata") or {}
    kept: dict[str, Any] = {k: meta[k] for k in ("name", "namespace") if meta.get(k)}
    for key in MANAGED_METADATA:
        if meta.get(key):
            kept[key] = copy.deepcopy(dict(meta[key]))
    out["metadata"] = kept
    return out


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def diff(base: Any, desired: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations that turn ``base`` into ``desired``: recursing into objects, and into lists of the
    same length (a fault changes one route of several); a list that changed length is replaced whole."""
    if isinstance(base, dict) and isinstance(desired, dict):
        ops: list[dict[str, Any]] = []
        for key in base:
            if key not in desired:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key, value in desired.items():
            child = f"{path}/{_escape(key)}"
            if key not in base:
                ops.append({"op": "add", "path": child, "value": copy.deepcopy(value)})
            else:
                ops.extend(diff(base[key], value, child))
        return ops
    if isinstance(base, list) and isinstance(desired, list):
        if len(base) == len(desired):
            ops = []
            for index, (old, new) in enumerate(zip(base, desired, strict=True)):
                ops.extend(diff(old, new, f"{path}/{index}"))
            return ops
        # One run of items inserted or removed (a fault's header-matched route put in front of the others, and
        # taken out again): said as adds or removes at that index, so that edits of the other items survive.
        longer, shorter = (desired, base) if len(desired) > len(base) else (base, desired)
        count = len(longer) - len(shorter)
        for index in range(len(longer) - count + 1):
            if longer[:index] + longer[index + count :] == shorter:
                if longer is desired:
                    return [
                        {"op": "add", "path": f"{path}/{index + k}", "value": copy.deepcopy(desired[index + k])}
                        for k in range(count)
                    ]
                return [{"op": "remove", "path": f"{path}/{index}"} for _ in range(count)]
    if base == desired and type(base) is type(desired):
        return []
    return [{"op": "replace", "path": path, "value": copy.deepcopy(desired)}]


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


_MISSING = object()


def value_at(doc: Any, path: str) -> Any:
    """The value at a JSON pointer, or a sentinel (compare with ``is``-free :func:`changed_paths`) when absent."""
    node = doc
    for token in path.split("/")[1:]:
        key = _unescape(token)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return _MISSING
    return node


def guarded_patch(base: Mapping[str, Any], desired: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The operations from ``base`` to ``desired``, each preceded by a ``test`` that the path still holds what
    ``base`` held (for an ``add``: that the parent still exists; the add itself fails if the key is taken by a
    list index shift)."""
    out: list[dict[str, Any]] = []
    # Removes at one list index come in runs (each shifts the next item to that index): test what each removes.
    working = copy.deepcopy(dict(base))
    for op in diff(dict(base), dict(desired)):
        if op["op"] in ("replace", "remove"):
            out.append({"op": "test", "path": op["path"], "value": copy.deepcopy(value_at(working, op["path"]))})
        out.append(op)
        working = _apply(working, op)
    return out


def _apply(doc: Any, op: dict[str, Any]) -> Any:
    """One add/remove/replace on a copy's nested containers (enough to follow a run of removes)."""
    tokens = [_unescape(t) for t in op["path"].split("/")[1:]]
    if not tokens:
        return copy.deepcopy(op.get("value"))
    parent = doc
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    if isinstance(parent, list):
        index = int(last)
        if op["op"] == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif op["op"] == "remove":
            del parent[index]
        else:
            parent[index] = copy.deepcopy(op["value"])
    elif op["op"] == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(op["value"])
    return doc


def changed_paths(ops: list[dict[str, Any]], base: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The paths our operations touch whose value someone else has changed since ``base`` was read."""
    changed = []
    for op in ops:
        if op["op"] == "test":
            continue
        path = op["path"]
        parent_path, _, last = path.rpartition("/")
        if op["op"] == "add" and _unescape(last).isdigit() and isinstance(value_at(base, parent_path), list):
            # An insertion into a list needs only the list: what others did to its items is theirs.
            if not isinstance(value_at(current, parent_path), list):
                changed.append(parent_path)
            continue
        before, now = value_at(base, path), value_at(current, path)
        if before is _MISSING and now is _MISSING:
            parent = path.rsplit("/", 1)[0]
            if value_at(base, parent) != value_at(current, parent) and value_at(current, parent) is _MISSING:
                changed.append(parent)
            continue
        if before is _MISSING or now is _MISSING or before != now:
            changed.append(path)
    return changed
