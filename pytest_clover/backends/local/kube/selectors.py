"""Label and field selectors, parsed, validated and matched as Kubernetes does.

The grammar, the validation rules and the error wording follow apimachinery v0.33 (``pkg/labels/selector.go``,
``pkg/fields/selector.go``, ``pkg/util/validation``), so that ``kubectl get -l …`` and ``--field-selector`` see
the same answers from the embedded mesh as from a real kube-apiserver. Every refusal is an
:class:`~.errors.ApiError` with code 400 (reason ``BadRequest``), the message being what the API server says.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelRequirement",
    "LabelSelector",
    "go_quote",
    "label_key_errors",
    "label_value_errors",
]

# --- validation (k8s.io/apimachinery/pkg/util/validation) -------------------------------------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_QNAME_RE = re.compile(f"^{_QNAME_FMT}$")
_QNAME_MAX = 63
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")


def _byte_length(text: str) -> int:
    # Go measures strings in UTF-8 bytes.
    return len(text.encode("utf-8", "surrogatepass"))


def regex_error(message: str, fmt: str, *examples: str) -> str:
    """Kubernetes' ``RegexError``: the message, examples and the regex used."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    """Kubernetes' ``MaxLenError`` wording."""
    return f"must be no more than {length} characters"


def dns1123_subdomain_errors(value: str) -> list[str]:
    """``IsDNS1123Subdomain``: the problems with ``value`` as a DNS subdomain (empty when valid)."""
    errors = []
    if _byte_length(value) > 253:
        errors.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errors.append(regex_error(_DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def label_key_errors(key: str) -> list[str]:
    """``IsQualifiedName``: the problems with ``key`` as a label key (``[prefix/]name``); empty when valid."""
    errors: list[str] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend("prefix part " + message for message in dns1123_subdomain_errors(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif _byte_length(name) > _QNAME_MAX:
        errors.append("name part " + max_len_error(_QNAME_MAX))
    if not _QNAME_RE.match(name):
        errors.append("name part " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errors


def label_value_errors(value: str) -> list[str]:
    """``IsValidLabelValue``: the problems with ``value`` as a label value; empty when valid."""
    errors = []
    if _byte_length(value) > 63:
        errors.append(max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errors.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """``fmt.Sprintf("%q", text)``: a double-quoted Go string literal, as Kubernetes prints bad values."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char == " " or char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def _field_invalid(path: str, shown_value: str, detail: str) -> str:
    """A ``field.Invalid`` error's text (``<path>: Invalid value: <value>: <detail>``)."""
    return f"{path}: Invalid value: {shown_value}: {detail}"


def _aggregate(messages: Sequence[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()``: one message alone, several de-duplicated in brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _go_string_slice(values: Sequence[str] | None) -> str:
    """How ``field.Invalid`` shows a ``[]string`` bad value (JSON; a nil slice is ``null``)."""
    if values is None:
        return "null"
    return "[" + ",".join(go_quote(value) for value in values) + "]"


# --- label selectors -------------------------------------------------------------------------------------

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"
_BINARY_OPERATORS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]


def _is_int64(text: str) -> bool:
    """Whether Go's ``strconv.ParseInt(text, 10, 64)`` accepts ``text``."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return False
    return -(2**63) <= int(text) <= 2**63 - 1


@dataclass(frozen=True)
class LabelRequirement:
    """One term of a label selector: ``key``, an operator (``in``, ``notin``, ``=``, ``==``, ``!=``,
    ``exists``, ``!``, ``gt``, ``lt``) and its values (sorted, as Kubernetes keeps them)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: Sequence[str] | None) -> LabelRequirement:
        """``labels.NewRequirement``: validate the key, the values for the operator, and each value."""
        problems = []
        if errors := label_key_errors(key):
            problems.append(_field_invalid("key", go_quote(key), "; ".join(errors)))
        given = list(values) if values is not None else []
        if operator in (IN, NOT_IN):
            if not given:
                problems.append(
                    _field_invalid(
                        "values", _go_string_slice(values), "for 'in', 'notin' operators, values set can't be empty"
                    )
                )
        elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(given) != 1:
                problems.append(
                    _field_invalid(
                        "values", _go_string_slice(values), "exact-match compatibility requires one single value"
                    )
                )
        elif operator in (EXISTS, DOES_NOT_EXIST):
            if given:
                problems.append(
                    _field_invalid(
                        "values", _go_string_slice(values), "values set must be empty for exists and does not exist"
                    )
                )
        elif operator in (GREATER_THAN, LESS_THAN):
            if len(given) != 1:
                problems.append(
                    _field_invalid(
                        "values", _go_string_slice(values), "for 'Gt', 'Lt' operators, exactly one value is required"
                    )
                )
            for index, value in enumerate(given):
                if not _is_int64(value):
                    problems.append(
                        _field_invalid(
                            f"values[{index}]",
                            go_quote(value),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                    )
        else:
            supported = ", ".join(go_quote(op) for op in [*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST])
            problems.append(f"operator: Unsupported value: {go_quote(operator)}: supported values: {supported}")
        for index, value in enumerate(given):
            if errors := label_value_errors(value):
                problems.append(_field_invalid(f"values[{index}][{key}]", go_quote(value), "; ".join(errors)))
        if problems:
            raise ValueError(_aggregate(problems))
        return cls(key, operator, tuple(given))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this term (a missing key satisfies ``!=`` and ``notin``)."""
        value = labels.get(self.key)
        operator = self.operator
        if operator in (IN, EQUALS, DOUBLE_EQUALS):
            return value is not None and value in self.values
        if operator in (NOT_IN, NOT_EQUALS):
            return value is None or value not in self.values
        if operator == EXISTS:
            return value is not None
        if operator == DOES_NOT_EXIST:
            return value is None
        if value is None or not _is_int64(value) or len(self.values) != 1 or not _is_int64(self.values[0]):
            return False
        if operator == GREATER_THAN:
            return int(value) > int(self.values[0])
        return int(value) < int(self.values[0])

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        joined = ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({joined})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{joined}"


# Lexer tokens, as labels.Lexer produces them.
_ERROR, _END, _CLOSE, _COMMA, _NOT, _DOUBLE_EQ, _EQ, _GT, _IDENT, _IN, _LT, _NOT_EQ, _NOT_IN, _OPEN = range(14)
_LITERALS = {
    ")": _CLOSE, ",": _COMMA, "!": _NOT, "==": _DOUBLE_EQ, "=": _EQ, ">": _GT, "in": _IN,
    "<": _LT, "!=": _NOT_EQ, "notin": _NOT_IN, "(": _OPEN,
}  # fmt: skip
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[int, str]]:
    """Split a label selector into tokens the way apimachinery's lexer does (ending with an end token).

    The Go lexer reads bytes and takes a NUL byte for the end of the input; so does this one."""
    tokens: list[tuple[int, str]] = []
    position, length = 0, len(text)
    while True:
        while position < length and text[position] in _WHITESPACE:
            position += 1
        if position >= length or text[position] == "\x00":
            tokens.append((_END, ""))
            return tokens
        if text[position] in _SPECIAL:
            # The longest run of special characters that still forms a known operator.
            buffer, token, literal = "", 0, ""
            while position < length and text[position] != "\x00":
                char = text[position]
                if char not in _SPECIAL:
                    break
                buffer += char
                if buffer in _LITERALS:
                    token, literal = _LITERALS[buffer], buffer
                elif token:
                    break
                position += 1
            else:
                position += 1  # Go consumes the NUL (or reads past the end) that stopped the loop
            if not token:
                tokens.append((_ERROR, f"error expected: keyword found '{buffer}'"))
            else:
                tokens.append((token, literal))
        else:
            start = position
            while position < length and text[position] not in _SPECIAL and text[position] not in _WHITESPACE:
                if text[position] == "\x00":
                    break
                position += 1
            word = text[start:position]
            if position < length and text[position] == "\x00":
                position += 1  # the NUL ends the identifier and is consumed with it
            tokens.append((_LITERALS.get(word, _IDENT), word))


class _LabelParser:
    """The recursive-descent parser of ``labels.Parse``; raises ValueError with Kubernetes' message."""

    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.position = 0

    def lookahead(self, values: bool) -> tuple[int, str]:
        token, literal = self.tokens[self.position]
        # In a value position the keywords are plain identifiers: `k in (in, notin)` is valid.
        if values and token in (_IN, _NOT_IN):
            token = _IDENT
        return token, literal

    def consume(self, values: bool) -> tuple[int, str]:
        result = self.lookahead(values)
        self.position += 1
        return result

    def parse(self) -> list[LabelRequirement]:
        requirements: list[LabelRequirement] = []
        while True:
            token, literal = self.lookahead(True)
            if token in (_IDENT, _NOT):
                try:
                    requirements.append(self.requirement())
                except ValueError as error:
                    raise ValueError(f"unable to parse requirement: {error}") from None
                token, literal = self.consume(True)
                if token == _END:
                    return requirements
                if token == _COMMA:
                    after, after_literal = self.lookahead(True)
                    if after not in (_IDENT, _NOT):
                        raise ValueError(f"found '{after_literal}', expected: identifier after ','")
                    continue
                raise ValueError(f"found '{literal}', expected: ',' or 'end of string'")
            if token == _END:
                return requirements
            raise ValueError(f"found '{literal}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> LabelRequirement:
        operator = ""
        token, literal = self.consume(True)
        if token == _NOT:
            operator = DOES_NOT_EXIST
            token, literal = self.consume(True)
        if token != _IDENT:
            raise ValueError(f"found '{literal}', expected: identifier")
        if errors := label_key_errors(literal):
            raise ValueError(_field_invalid("<nil>", go_quote(literal), "; ".join(errors)))
        key = literal
        if self.lookahead(True)[0] in (_END, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        if operator in (EXISTS, DOES_NOT_EXIST):
            return LabelRequirement.new(key, operator, [])
        token, literal = self.consume(False)
        operators = {
            _IN: IN, _EQ: EQUALS, _DOUBLE_EQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
            _NOT_IN: NOT_IN, _NOT_EQ: NOT_EQUALS,
        }  # fmt: skip
        if token not in operators:
            raise ValueError(f"found '{literal}', expected: in, notin, =, ==, !=, gt, lt")
        operator = operators[token]
        values = self.value_set() if operator in (IN, NOT_IN) else self.exact_value()
        return LabelRequirement.new(key, operator, sorted(values))

    def value_set(self) -> set[str]:
        token, literal = self.consume(True)
        if token != _OPEN:
            raise ValueError(f"found '{literal}' expected: '('")
        token, literal = self.lookahead(True)
        if token in (_IDENT, _COMMA):
            values = self.identifiers()
            if self.consume(True)[0] != _CLOSE:
                raise ValueError(f"found '{literal}', expected: ')'")
            return values
        if token == _CLOSE:
            self.consume(True)
            return {""}
        raise ValueError(f"found '{literal}', expected: ',', ')' or identifier")

    def identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            token, literal = self.consume(True)
            if token == _IDENT:
                values.add(literal)
                after, after_literal = self.lookahead(True)
                if after == _COMMA:
                    continue
                if after == _CLOSE:
                    return values
                raise ValueError(f"found '{after_literal}', expected: ',' or ')'")
            if token == _COMMA:
                # Empty entries (`(,a)`, `(a,)`, `(a,,b)`) stand for the empty value.
                if not values:
                    values.add("")
                after = self.lookahead(True)[0]
                if after == _CLOSE:
                    values.add("")
                    return values
                if after == _COMMA:
                    self.consume(True)
                    values.add("")
                continue
            raise ValueError(f"found '{literal}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        if self.lookahead(True)[0] in (_END, _COMMA):
            return {""}
        token, literal = self.consume(True)
        if token == _IDENT:
            return {literal}
        raise ValueError(f"found '{literal}', expected: identifier")


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector: requirements ANDed together, sorted by key. ``nothing`` matches no object
    (a null ``LabelSelector`` object); an empty selector matches every object."""

    requirements: tuple[LabelRequirement, ...] = ()
    nothing: bool = False

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the ``labelSelector`` query syntax; ApiError 400 with Kubernetes' message when invalid."""
        return _parse_label_selector(text)

    @classmethod
    def from_match(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """``metav1.LabelSelectorAsSelector``: a ``matchLabels``/``matchExpressions`` object. ``None`` matches
        nothing, ``{}`` everything; invalid content is ApiError 400."""
        if selector is None:
            return cls(nothing=True)
        requirements: list[LabelRequirement] = []
        operators = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
        try:
            for key, value in sorted((selector.get("matchLabels") or {}).items()):
                requirements.append(LabelRequirement.new(str(key), EQUALS, [str(value)]))
            for expression in selector.get("matchExpressions") or ():
                operator = str(expression.get("operator", ""))
                if operator not in operators:
                    raise ValueError(f"{go_quote(operator)} is not a valid label selector operator")
                raw_values = expression.get("values")
                # Kept as a sorted set, as the query syntax keeps them, so equal selectors compare equal.
                values = None if raw_values is None else sorted({str(value) for value in raw_values})
                requirements.append(
                    LabelRequirement.new(str(expression.get("key", "")), operators[operator], values or None)
                )
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        return cls(tuple(sorted(requirements, key=lambda requirement: requirement.key)))

    @property
    def empty(self) -> bool:
        """Whether this selector selects everything."""
        return not self.requirements and not self.nothing

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels is selected."""
        if self.nothing:
            return False
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


# --- field selectors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector: ``field``, ``=`` or ``!=`` (``==`` is ``=``), the unescaped value."""

    field: str
    operator: str
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


def escape_field_value(value: str) -> str:
    """``fields.EscapeValue``: backslash-escape ``\\``, ``,`` and ``=`` in a field selector value."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    if not any(char in value for char in "\\,="):
        return value
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            # Go prints the rune with %v: its code point, not the character.
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(char)}")
        else:
            out.append(char)
    if escaped:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    if not text:
        return []
    terms, start, escaped = [], 0, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for index in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector: requirements ANDed together, sorted by their canonical text."""

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """Parse the ``fieldSelector`` query syntax; ApiError 400 with Kubernetes' message when invalid.
        Which fields a resource supports is the store's business."""
        return _parse_field_selector(text)

    @property
    def empty(self) -> bool:
        """Whether this selector selects everything."""
        return not self.requirements

    @property
    def fields(self) -> list[str]:
        """The field paths the selector uses."""
        return [requirement.field for requirement in self.requirements]

    def matches(self, getter: Callable[[str], str]) -> bool:
        """Whether an object is selected; ``getter(field)`` returns the object's value of a field path."""
        for requirement in self.requirements:
            equal = getter(requirement.field) == requirement.value
            if equal != (requirement.operator == "="):
                return False
        return True

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


# Selectors repeat (informers, controllers, kubectl -l): parse each text once. Parsed selectors are frozen,
# so sharing them is safe; refusals are not cached (an exception is never stored by lru_cache).
@functools.lru_cache(maxsize=512)
def _parse_label_selector(text: str) -> LabelSelector:
    try:
        requirements = _LabelParser(text).parse()
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    return LabelSelector(tuple(sorted(requirements, key=lambda requirement: requirement.key)))


@functools.lru_cache(maxsize=512)
def _parse_field_selector(text: str) -> FieldSelector:
    requirements = []
    for part in _split_terms(text):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise ApiError(400, f"invalid selector: '{text}'; can't understand '{part}'")
        field, operator, raw_value = split
        try:
            value = _unescape_field_value(raw_value)
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        requirements.append(FieldRequirement(field, "!=" if operator == "!=" else "=", value))
    # Sorted as written back (``==`` is written ``=``), so that parsing a selector's text gives it back: sorting
    # the raw terms, as Kubernetes does, puts ``a==x`` and ``a=.`` in an order their canonical texts do not keep.
    return FieldSelector(tuple(sorted(requirements, key=str)))
