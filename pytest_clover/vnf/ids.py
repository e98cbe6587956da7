"""snort-ids: inspects mirrored requests against Snort-flavoured signatures.

The mesh mirrors traffic here and throws the answer away, so this component
never blocks anything; what matters is what it records under
``/clover/alerts``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .common import (
    Component,
    Identity,
    InvalidSetting,
    JSONDict,
    boolean,
    check_keys,
    error_response,
    integer,
    json_env,
    own_headers,
    read_json_object,
    string,
)

RECENT_ALERTS = 100
# Like Snort's http_inspect body depth: signatures look at the head of a
# body, so a mirrored 10 MiB upload costs at most this much memory.
BODY_INSPECT_LIMIT = 1 << 20
SIMPLE_FIELDS = ("path", "query", "uri", "body", "any")
RULE_FIELDS = ("sid", "msg", "field", "content", "regex", "nocase")

DEFAULT_RULES: list[JSONDict] = [
    {
        "sid": 1000001,
        "msg": "WEB-ATTACK path traversal ../ in URI",
        "field": "path",
        "content": "../",
    },
    {
        "sid": 1000002,
        "msg": "WEB-ATTACK /etc/passwd access attempt",
        "field": "uri",
        "content": "/etc/passwd",
    },
    {
        "sid": 1000003,
        "msg": "SQL-INJECTION UNION SELECT in query",
        "field": "query",
        "regex": r"(?i)union\s+select",
    },
    {
        # The signature OPNFV Clover shipped with its snort-ids image.
        "sid": 10000003,
        "msg": "MALWARE-CNC User-Agent ASafaWeb Scan",
        "field": "header:user-agent",
        "content": "asafaweb.com",
    },
    {
        "sid": 1000004,
        "msg": "WEB-ATTACK XSS <script> tag",
        "field": "any",
        "content": "<script",
        "nocase": True,
    },
]


@dataclass(frozen=True)
class Rule:
    sid: int
    msg: str
    field: str
    nocase: bool
    content: str | None = None
    regex: re.Pattern[str] | None = None
    # content, lowercased once at load time when nocase is set.
    needle: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, raw: object, where: str = "rule") -> Rule:
        if not isinstance(raw, dict):
            raise InvalidSetting(where, f"{where} must be a JSON object (got {raw!r})")
        check_keys(raw, RULE_FIELDS, where)
        if "sid" not in raw:
            raise InvalidSetting("sid", f"{where}: sid is required (an integer >= 1)")
        sid = integer("sid", raw["sid"], 1)
        msg = string("msg", raw.get("msg", f"sid {sid}"))
        field = string("field", raw.get("field", "any"))
        if field not in SIMPLE_FIELDS and not (field.startswith("header:") and len(field) > len("header:")):
            raise InvalidSetting(
                "field",
                f"field must be one of {', '.join(SIMPLE_FIELDS)} or header:<name> (got {field!r})",
            )
        if field.startswith("header:"):
            field = field.lower()
        nocase = boolean("nocase", raw.get("nocase", False))
        if ("content" in raw) == ("regex" in raw):
            raise InvalidSetting("content", f"rule sid {sid}: exactly one of content or regex is required")
        if "content" in raw:
            return cls(sid, msg, field, nocase, content=string("content", raw["content"]))
        pattern = string("regex", raw["regex"])
        try:
            compiled = re.compile(pattern, re.IGNORECASE if nocase else 0)
        except re.error as exc:
            raise InvalidSetting("regex", f"rule sid {sid}: regex {pattern!r} is invalid: {exc}") from None
        return cls(sid, msg, field, nocase, regex=compiled)

    def __post_init__(self) -> None:
        needle = self.content
        if needle is not None and self.nocase:
            needle = needle.lower()
        object.__setattr__(self, "needle", needle)

    def to_json(self) -> JSONDict:
        out: JSONDict = {"sid": self.sid, "msg": self.msg, "field": self.field}
        if self.content is not None:
            out["content"] = self.content
        else:
            assert self.regex is not None
            out["regex"] = self.regex.pattern
        out["nocase"] = self.nocase
        return out

    def matches(self, subject: Subject) -> bool:
        text = subject.get(self.field, lower=self.nocase and self.content is not None)
        if text is None:
            return False
        if self.regex is not None:
            return self.regex.search(text) is not None
        assert self.needle is not None
        return self.needle in text


def parse_rules(raw: object, field: str) -> dict[int, Rule]:
    if not isinstance(raw, list):
        raise InvalidSetting(field, f"{field} must be a JSON list of rules (got {raw!r})")
    rules: dict[int, Rule] = {}
    for i, item in enumerate(raw):
        rule = Rule.parse(item, f"{field}[{i}]")
        if rule.sid in rules:
            raise InvalidSetting("sid", f"{field}[{i}]: duplicate sid {rule.sid}")
        rules[rule.sid] = rule
    return rules


class Subject:
    """One request as the rules see it; each field is rendered at most once."""

    def __init__(self, request: web.Request, body: str) -> None:
        self._request = request
        self._body = body
        self._cache: dict[tuple[str, bool], str | None] = {}

    def get(self, field: str, *, lower: bool) -> str | None:
        key = (field, lower)
        if key in self._cache:
            return self._cache[key]
        text = self._render(field)
        if text is not None and lower:
            text = text.lower()
        self._cache[key] = text
        return text

    def _render(self, field: str) -> str | None:
        request = self._request
        if field == "path":
            return request.path
        if field == "query":
            return request.query_string
        if field == "uri":
            query = request.query_string
            return f"{request.path}?{query}" if query else request.path
        if field == "body":
            return self._body
        if field == "any":
            lines = [f"{request.method} {request.rel_url.raw_path_qs}"]
            uri = self.get("uri", lower=False)
            assert uri is not None
            lines.append(uri)
            lines.extend(f"{name}: {value}" for name, value in request.headers.items())
            lines.append("")
            lines.append(self._body)
            return "\n".join(lines)
        values = request.headers.getall(field[len("header:") :], [])
        return ", ".join(values) if values else None


class IDS(Component):
    name = "ids"

    def __init__(self, identity: Identity, env: Mapping[str, str]) -> None:
        super().__init__(identity)
        raw = json_env(env, "CLOVER_IDS_RULES")
        self.rules = parse_rules(DEFAULT_RULES if raw is None else raw, "CLOVER_IDS_RULES")
        self.inspected = 0
        self.total = 0
        self.by_sid: Counter[int] = Counter()
        self.recent: deque[JSONDict] = deque(maxlen=RECENT_ALERTS)
        self._ok = b'{"inspected":true}'
        self._headers = own_headers(identity)

    def config(self) -> JSONDict:
        return {"rules": self._rules_json()}

    def update(self, patch: Mapping[str, Any]) -> None:
        check_keys(patch, ("rules",), "control")
        if "rules" in patch:
            self.rules = parse_rules(patch["rules"], "rules")

    def stats(self) -> JSONDict:
        return {"inspected": self.inspected, "alerts": self.total}

    def alerts(self) -> JSONDict:
        return {
            "inspected": self.inspected,
            "total": self.total,
            "by_sid": {str(sid): n for sid, n in sorted(self.by_sid.items())},
            "recent": list(self.recent),
        }

    def _rules_json(self) -> list[JSONDict]:
        return [rule.to_json() for rule in self.rules.values()]

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/clover/rules", self._get_rules)
        router.add_post("/clover/rules", self._add_rule)
        router.add_delete("/clover/rules/{sid}", self._delete_rule)
        router.add_get("/clover/alerts", self._get_alerts)
        router.add_delete("/clover/alerts", self._reset_alerts)

    async def _read_body(self, request: web.Request) -> str:
        if not request.body_exists:
            return ""
        kept: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            if size < BODY_INSPECT_LIMIT:
                kept.append(chunk[: BODY_INSPECT_LIMIT - size])
            size += len(chunk)
        # surrogateescape keeps arbitrary bytes round-trippable while still
        # letting non-ASCII signatures match UTF-8 bodies.
        return b"".join(kept).decode("utf-8", "surrogateescape")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_body(request)
        self.inspected += 1
        subject = Subject(request, body)
        for rule in self.rules.values():
            if rule.matches(subject):
                self.total += 1
                self.by_sid[rule.sid] += 1
                self.recent.append(
                    {
                        "sid": rule.sid,
                        "msg": rule.msg,
                        "request_id": request.headers.get("x-request-id"),
                        "path": request.path,
                        "time": time.time(),
                    }
                )
        return web.Response(body=self._ok, content_type="application/json", headers=self._headers)

    async def _get_rules(self, request: web.Request) -> web.StreamResponse:
        return self.respond({"rules": self._rules_json()})

    async def _add_rule(self, request: web.Request) -> web.StreamResponse:
        try:
            rule = Rule.parse(await read_json_object(request))
        except InvalidSetting as exc:
            return error_response(self.identity, exc)
        if rule.sid in self.rules:
            return self.respond({"error": f"a rule with sid {rule.sid} already exists", "sid": rule.sid}, 409)
        self.rules = {**self.rules, rule.sid: rule}
        return self.respond(rule.to_json(), 201)

    async def _delete_rule(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["sid"]
        try:
            sid = int(raw)
        except ValueError:
            return error_response(self.identity, InvalidSetting("sid", f"sid must be an integer (got {raw!r})"))
        if sid not in self.rules:
            return self.respond({"error": f"no rule with sid {sid}", "sid": sid}, 404)
        rules = dict(self.rules)
        removed = rules.pop(sid)
        self.rules = rules
        return self.respond({"deleted": removed.to_json()})

    async def _get_alerts(self, request: web.Request) -> web.StreamResponse:
        return self.respond(self.alerts())

    async def _reset_alerts(self, request: web.Request) -> web.StreamResponse:
        self.inspected = 0
        self.total = 0
        self.by_sid.clear()
        self.recent.clear()
        return self.respond(self.alerts())
