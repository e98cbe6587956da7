"""Label and field selectors of the embedded Kubernetes API: grammar, matching and error wording."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clover.backends.local.kube.errors import ApiError
from pytest_clover.backends.local.kube.selectors import (
    FieldRequirement,
    FieldSelector,
    LabelRequirement,
    LabelSelector,
    go_quote,
)

# --- label selectors: accepted grammar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("   ", ""),
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a", "a"),
        ("!a", "!a"),
        ("  a  =  b  ", "a=b"),
        ("x in (b,a)", "x in (a,b)"),
        ("x notin (a)", "x notin (a)"),
        ("x in (in,notin)", "x in (in,notin)"),
        ("a=in", "a=in"),
        ("z=1,a=2", "a=2,z=1"),  # sorted by key, as Kubernetes keeps them
        ("a=", "a="),
        ("a in ()", "a in ()"),
        ("a in (,b)", "a in (,b)"),
        ("a in (b,)", "a in (,b)"),
        ("a>5", "a>5"),
        ("a<3", "a<3"),
        ("example.com/app=web", "example.com/app=web"),
        ("a=b\t,\nc", "a=b,c"),
    ],
)
def test_label_selector_parses_the_kubernetes_grammar(text: str, expected: str) -> None:
    assert str(LabelSelector.parse(text)) == expected


def test_label_selector_requirements_are_structured() -> None:
    selector = LabelSelector.parse("env in (prod, staging),!canary,tier")
    assert selector.requirements == (
        LabelRequirement("canary", "!", ()),
        LabelRequirement("env", "in", ("prod", "staging")),
        LabelRequirement("tier", "exists", ()),
    )


@pytest.mark.parametrize(
    ("text", "labels", "selected"),
    [
        ("", {}, True),
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a=b", {}, False),
        ("a!=b", {}, True),  # a missing key satisfies != and notin
        ("a!=b", {"a": "b"}, False),
        ("a notin (x,y)", {}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x,y)", {}, False),
        ("a", {"a": ""}, True),
        ("a", {}, False),
        ("!a", {}, True),
        ("!a", {"a": "1"}, False),
        ("a=", {"a": ""}, True),
        ("a=", {}, False),
        ("a>5", {"a": "6"}, True),
        ("a>5", {"a": "5"}, False),
        ("a>5", {"a": "x"}, False),
        ("a<5", {"a": "-1"}, True),  # a label value cannot be negative, but a label may hold anything
        ("a=b,c=d", {"a": "b", "c": "d"}, True),
        ("a=b,c=d", {"a": "b"}, False),
    ],
)
def test_label_selector_matches_as_kubernetes(text: str, labels: dict[str, str], selected: bool) -> None:
    assert LabelSelector.parse(text).matches(labels) is selected


# --- label selectors: refusals, worded as kube-apiserver words them --------------------------------------

_NAME_PART = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("x,", "found '', expected: identifier after ','"),
        ("a in (a,,)", "unable to parse requirement: found ')', expected: ',', or identifier"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a@b", f'unable to parse requirement: <nil>: Invalid value: "a@b": {_NAME_PART}'),
        ("a=b@", f'unable to parse requirement: values[0][a]: Invalid value: "b@": {_VALUE}'),
        (
            "a>b",
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value "
            "must be an integer",
        ),
        ("/a=b", 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty'),
        (
            "a" * 64,
            f'unable to parse requirement: <nil>: Invalid value: "{"a" * 64}": name part must be no more than 63 characters',
        ),
    ],
)
def test_label_selector_errors_are_400_with_kubernetes_wording(text: str, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        LabelSelector.parse(text)
    assert caught.value.code == 400
    assert caught.value.reason == "BadRequest"
    assert caught.value.message == message


def test_label_key_prefix_rules() -> None:
    assert str(LabelSelector.parse("a.b/c=d")) == "a.b/c=d"
    with pytest.raises(ApiError, match="prefix part a lowercase RFC 1123 subdomain"):
        LabelSelector.parse("A_B/c=d")
    with pytest.raises(ApiError, match="a qualified name must consist"):
        LabelSelector.parse("a/b/c")
    long_prefix = ".".join(["a" * 63] * 4)  # 255 characters
    with pytest.raises(ApiError, match="prefix part must be no more than 253 characters"):
        LabelSelector.parse(f"{long_prefix}/x")
    with pytest.raises(ApiError, match="must be no more than 63 characters"):
        LabelSelector.parse("a=" + "b" * 64)


def test_a_nul_byte_ends_a_selector_as_in_go() -> None:
    # Go's lexer reads a NUL byte as the end of the input.
    assert str(LabelSelector.parse("a=b \x00 garbage (")) == "a=b"


# --- LabelSelector objects (matchLabels / matchExpressions) ----------------------------------------------


def test_from_match_builds_the_same_selector_as_the_query_syntax() -> None:
    selector = LabelSelector.from_match(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
            ],
        }
    )
    assert selector == LabelSelector.parse("app=web,tier in (a,b),!canary,zone,env notin (dev)")
    assert selector.matches({"app": "web", "tier": "a", "zone": "z"})
    assert not selector.matches({"app": "web", "tier": "a", "zone": "z", "canary": "1"})


def test_from_match_null_selects_nothing_and_empty_everything() -> None:
    assert not LabelSelector.from_match(None).matches({})
    assert LabelSelector.from_match({}).matches({"a": "b"})
    assert LabelSelector.from_match({}).empty


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "c", "operator": "In"}]},
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty",
        ),
        ({"matchExpressions": [{"key": "c", "operator": "Foo"}]}, '"Foo" is not a valid label selector operator'),
        (
            {"matchExpressions": [{"key": "c", "operator": "Exists", "values": ["a"]}]},
            'values: Invalid value: ["a"]: values set must be empty for exists and does not exist',
        ),
        ({"matchLabels": {"a": "b c"}}, f'values[0][a]: Invalid value: "b c": {_VALUE}'),
        ({"matchLabels": {"a b": "c"}}, f'key: Invalid value: "a b": {_NAME_PART}'),
    ],
)
def test_from_match_refusals(selector: dict[str, object], message: str) -> None:
    with pytest.raises(ApiError) as caught:
        LabelSelector.from_match(selector)
    assert caught.value.code == 400
    assert caught.value.message == message


# --- hypothesis: the grammar round-trips and nothing but ApiError escapes ---------------------------------

_name = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?", fullmatch=True)
_prefix = st.from_regex(
    r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?){0,2}", fullmatch=True
)
_key = st.one_of(_name, st.builds(lambda p, n: f"{p}/{n}", _prefix, _name))
_value = st.one_of(st.just(""), _name)


@st.composite
def _requirement(draw: st.DrawFn) -> LabelRequirement:
    key = draw(_key)
    operator = draw(st.sampled_from(["in", "notin", "=", "==", "!=", "exists", "!", "gt", "lt"]))
    if operator in ("exists", "!"):
        values: list[str] = []
    elif operator in ("in", "notin"):
        values = sorted(set(draw(st.lists(_value, min_size=1, max_size=4))))
    elif operator in ("gt", "lt"):
        # Negative numbers are not valid label values, so Kubernetes refuses them in a selector.
        values = [str(draw(st.integers(0, 2**63 - 1)))]
    else:
        values = [draw(_value)]
    return LabelRequirement(key, operator, tuple(values))


@settings(max_examples=300, deadline=None)
@given(st.lists(_requirement(), max_size=5), st.sampled_from(["", " ", "  ", "\t"]))
def test_generated_selectors_round_trip(requirements: list[LabelRequirement], space: str) -> None:
    expected = tuple(sorted(requirements, key=lambda r: r.key))
    text = ("," + space).join(str(r) for r in requirements)
    parsed = LabelSelector.parse(space + text + space)
    # Kubernetes sorts by key with a stable sort: equal keys keep their order.
    assert parsed.requirements == expected
    assert LabelSelector.parse(str(parsed)) == parsed


@settings(max_examples=300, deadline=None)
@given(st.lists(_requirement(), max_size=4), st.dictionaries(_key, _value, max_size=4))
def test_matching_is_the_conjunction_of_requirements(
    requirements: list[LabelRequirement], labels: dict[str, str]
) -> None:
    selector = LabelSelector(tuple(requirements))
    assert selector.matches(labels) == all(r.matches(labels) for r in requirements)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab=!(),<> \tin/.-_1\x00é")), max_size=30) | st.text(max_size=30))
def test_arbitrary_text_yields_a_selector_or_an_api_error(text: str) -> None:
    try:
        selector = LabelSelector.parse(text)
    except ApiError as error:
        assert error.code == 400
        assert error.message
    else:
        selector.matches({"a": "b"})
        # What parsed prints back to something that parses to the same selector.
        assert LabelSelector.parse(str(selector)) == selector


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab=!,\\ .x")), max_size=30) | st.text(max_size=30))
def test_arbitrary_field_selectors_yield_a_selector_or_an_api_error(text: str) -> None:
    try:
        selector = FieldSelector.parse(text)
    except ApiError as error:
        assert error.code == 400
    else:
        assert FieldSelector.parse(str(selector)) == selector


# --- field selectors ---------------------------------------------------------------------------------------


def test_field_selector_terms_and_matching() -> None:
    selector = FieldSelector.parse("status.phase=Running,metadata.name!=b,spec.nodeName==n1")
    # Terms come sorted as text, as apimachinery sorts them.
    assert selector.requirements == (
        FieldRequirement("metadata.name", "!=", "b"),
        FieldRequirement("spec.nodeName", "=", "n1"),
        FieldRequirement("status.phase", "=", "Running"),
    )
    values = {"status.phase": "Running", "metadata.name": "a", "spec.nodeName": "n1"}
    assert selector.matches(values.__getitem__)
    assert not selector.matches({**values, "metadata.name": "b"}.__getitem__)
    assert FieldSelector.parse("").empty
    assert FieldSelector.parse(",,").empty


def test_field_selector_escaping() -> None:
    selector = FieldSelector.parse(r"metadata.name=a\,b\=c\\d")
    assert selector.requirements == (FieldRequirement("metadata.name", "=", "a,b=c\\d"),)
    assert str(selector) == r"metadata.name=a\,b\=c\\d"
    assert FieldSelector.parse(r"a=\,").requirements[0].value == ","


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        (r"x=\q", r"invalid field selector: invalid escape sequence: \q"),
        ("x=\\", "invalid field selector: invalid escape sequence: \\"),
        ("x=a=b", "invalid field selector: unescaped character in value: 61"),  # Go prints the rune's number
    ],
)
def test_field_selector_refusals(text: str, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        FieldSelector.parse(text)
    assert caught.value.code == 400
    assert caught.value.message == message


def test_go_quote_escapes_as_go_does() -> None:
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'
