"""The Kubernetes backend's guards: the context allow-list, protected and foreign namespaces, the blast radius."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clover.backends.k8s.safety import (
    IN_CLUSTER_CONTEXT,
    PROTECTED_NAMESPACES,
    check_context,
    check_namespace,
    is_protected,
    pick_kill_targets,
    resolve_kubeconfig,
)
from pytest_clover.backends.k8s.settings import (
    MANAGED_BY_LABEL,
    OPT_IN_ANNOTATION,
    RUN_ID_LABEL,
    ClusterRef,
    K8sSettings,
    SettingError,
)
from pytest_clover.errors import BackendError, InvalidFault, SafetyRefusal


@pytest.fixture(autouse=True)
def no_ambient_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing of the machine's own Kubernetes setup leaks in: no $KUBECONFIG, no ~/.kube/config, not a pod."""
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def kubeconfig(path: Path, *, current: str | None, contexts: dict[str, str], servers: dict[str, str]) -> Path:
    """A kubeconfig: ``contexts`` maps a context to its cluster, ``servers`` a cluster to its URL."""
    data: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c, "cluster": {"server": s}} for c, s in servers.items()],
        "contexts": [{"name": n, "context": {"cluster": c, "user": "u"}} for n, c in contexts.items()],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }
    if current is not None:
        data["current-context"] = current
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return kubeconfig(
        tmp_path / "kubeconfig",
        current="clover-abc123",
        contexts={"clover-abc123": "mesh", "kind-chaos": "kind", "prod-eu": "prod"},
        servers={"mesh": "https://127.0.0.2:6443", "kind": "https://127.0.0.1:40213", "prod": "https://10.0.0.1"},
    )


# --------------------------------------------------------------------------- check_context


def test_the_current_context_on_the_default_allow_list_passes(config_file: Path) -> None:
    ref = check_context(K8sSettings(), str(config_file))
    assert ref == ClusterRef("clover-abc123", "https://127.0.0.2:6443")


def test_settings_context_and_settings_kubeconfig_are_used(config_file: Path) -> None:
    ref = check_context(K8sSettings(kubeconfig=str(config_file), context="kind-chaos"), None)
    assert ref == ClusterRef("kind-chaos", "https://127.0.0.1:40213")


def test_a_context_not_on_the_allow_list_is_refused_naming_the_setting(config_file: Path) -> None:
    with pytest.raises(SafetyRefusal) as refused:
        check_context(K8sSettings(context="prod-eu"), str(config_file))
    text = str(refused.value)
    assert "'prod-eu'" in text and "https://10.0.0.1" in text
    assert "clover_allowed_contexts" in text and "[pytest]" in text
    assert "clover_allowed_contexts = clover-*, kind-*, prod-eu" in text


def test_allow_list_patterns_are_fnmatch_and_case_sensitive(config_file: Path) -> None:
    allowed = K8sSettings(context="prod-eu", allowed_contexts=("prod-*",))
    assert check_context(allowed, str(config_file)).context == "prod-eu"
    with pytest.raises(SafetyRefusal):
        check_context(K8sSettings(context="prod-eu", allowed_contexts=("PROD-*", "prod-e")), str(config_file))
    with pytest.raises(SafetyRefusal):  # the defaults no longer apply once a list is given
        check_context(K8sSettings(allowed_contexts=("prod-*",)), str(config_file))


def test_kubeconfig_env_list_merges_as_kubectl_first_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "a", current="kind-one", contexts={"kind-one": "c1"}, servers={"c1": "https://a"})
    second = kubeconfig(
        tmp_path / "b",
        current="kind-two",
        contexts={"kind-two": "c2", "kind-one": "c2"},
        servers={"c2": "https://b", "c1": "https://other"},
    )
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    assert check_context(K8sSettings(), None) == ClusterRef("kind-one", "https://a")
    assert check_context(K8sSettings(context="kind-two"), None) == ClusterRef("kind-two", "https://b")
    # The same list given explicitly (as a backend passes $KUBECONFIG on), and resolved for the client.
    monkeypatch.delenv("KUBECONFIG")
    joined = f"{first}:{tmp_path / 'missing'}:{second}"
    assert check_context(K8sSettings(), joined) == ClusterRef("kind-one", "https://a")
    assert resolve_kubeconfig(K8sSettings(), joined) == f"{first}:{second}"
    assert resolve_kubeconfig(K8sSettings(kubeconfig=str(tmp_path / "missing"))) is None


def test_a_missing_kubeconfig_is_a_setting_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "kubeconfig"
    with pytest.raises(SettingError) as error:
        check_context(K8sSettings(), str(missing))
    assert str(missing) in str(error.value) and "--clover-kubeconfig" in str(error.value)
    with pytest.raises(SettingError) as default:
        check_context(K8sSettings(), None)
    assert "~/.kube/config" in str(default.value) and "KUBECONFIG" in str(default.value)


def test_an_unknown_context_lists_the_known_ones(config_file: Path) -> None:
    with pytest.raises(SettingError) as error:
        check_context(K8sSettings(context="kind-typo"), str(config_file))
    assert "'kind-typo'" in str(error.value) and "clover-abc123, kind-chaos, prod-eu" in str(error.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("contexts: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "not a kubeconfig"),
        ("contexts: {a: b}\n", "contexts must be a list"),
        ("clusters:\n- cluster: {server: x}\n", "clusters must be a list of entries with a name"),
        ("contexts:\n- name: c\n  context: {cluster: nowhere}\ncurrent-context: c\n", "which has no server URL"),
        ("contexts: []\n", "has no current context"),
    ],
)
def test_a_malformed_kubeconfig_is_a_setting_error(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(SettingError) as error:
        check_context(K8sSettings(allowed_contexts=("*",)), str(path))
    assert says in str(error.value) and str(path) in str(error.value)


def test_in_a_pod_without_kubeconfig_the_context_is_in_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(SafetyRefusal) as refused:
        check_context(K8sSettings(), None)
    assert "'in-cluster'" in str(refused.value) and "https://10.96.0.1:443" in str(refused.value)
    ref = check_context(K8sSettings(allowed_contexts=(IN_CLUSTER_CONTEXT,)), None)
    assert ref == ClusterRef("in-cluster", "https://10.96.0.1:443")
    with pytest.raises(SettingError):  # a named context needs a kubeconfig that has it
        check_context(K8sSettings(context="kind-x", allowed_contexts=("*",)), None)


def test_in_a_pod_an_explicit_kubeconfig_still_wins(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert check_context(K8sSettings(), str(config_file)).context == "clover-abc123"
    with pytest.raises(SettingError):  # asked for a file that is not there: no silent fallback to the pod's identity
        check_context(K8sSettings(allowed_contexts=("*",)), str(config_file.with_name("missing")))


def test_check_context_builds_no_client(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "kubernetes", None)  # importing it now raises ImportError
    assert check_context(K8sSettings(), str(config_file)).context == "clover-abc123"


# --------------------------------------------------------------------------- check_namespace


def namespace(
    name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}}}  # fmt: skip


OURS = {MANAGED_BY_LABEL: "pytest-clover", RUN_ID_LABEL: "run-1"}
OPT_IN = {OPT_IN_ANNOTATION: "enabled"}


def test_our_own_namespace_and_an_opted_in_one_are_allowed() -> None:
    check_namespace(namespace("clover-run-1", OURS), run_id="run-1")
    check_namespace(namespace("shop", annotations=OPT_IN), run_id="run-1")


@pytest.mark.parametrize("name", [*sorted(PROTECTED_NAMESPACES), "kube-anything"])
def test_protected_namespaces_are_refused_even_opted_in_and_labelled(name: str) -> None:
    assert is_protected(name)
    with pytest.raises(SafetyRefusal) as refused:
        check_namespace(namespace(name, OURS, OPT_IN), run_id="run-1")
    assert f"'{name}' is protected" in str(refused.value)


def test_a_foreign_namespace_is_refused_with_the_annotate_command() -> None:
    with pytest.raises(SafetyRefusal) as refused:
        check_namespace(namespace("shop"), run_id="run-1")
    text = str(refused.value)
    assert "not created by pytest-clover" in text
    assert "kubectl annotate namespace shop clover.opnfv.org/chaos=enabled" in text


def test_another_runs_namespace_or_a_wrong_annotation_value_is_refused() -> None:
    with pytest.raises(SafetyRefusal) as other_run:
        check_namespace(namespace("clover-run-2", {**OURS, RUN_ID_LABEL: "run-2"}), run_id="run-1")
    assert "another pytest-clover run" in str(other_run.value) and "'run-2'" in str(other_run.value)
    with pytest.raises(SafetyRefusal) as wrong_value:
        check_namespace(namespace("shop", annotations={OPT_IN_ANNOTATION: "true"}), run_id="run-1")
    assert "is 'true', not 'enabled'" in str(wrong_value.value)
    with pytest.raises(SafetyRefusal):  # an empty run id matches nobody's label
        check_namespace(namespace("clover-x", {MANAGED_BY_LABEL: "pytest-clover", RUN_ID_LABEL: ""}), run_id="")


def test_not_protected_lookalikes() -> None:
    assert not is_protected("default") and not is_protected("kubeflow") and not is_protected("istio-ingress")


# --------------------------------------------------------------------------- pick_kill_targets

PODS = [f"web-{i}" for i in range(10)]


def test_one_pod_by_default_drawn_from_the_seed() -> None:
    first = pick_kill_targets(PODS, count=None, percent=None, max_percent=50, rng=random.Random(7))
    again = pick_kill_targets(list(reversed(PODS)), count=None, percent=None, max_percent=50, rng=random.Random(7))
    assert len(first) == 1 and first == again and first[0] in PODS


@pytest.mark.parametrize(
    ("percent", "total", "killed"), [(50, 3, 2), (10, 10, 1), (1, 10, 1), (7, 100, 7), (33.4, 3, 2)]
)
def test_percent_rounds_up_and_takes_at_least_one(percent: float, total: int, killed: int) -> None:
    pods = [f"p{i}" for i in range(total)]
    picked = pick_kill_targets(pods, count=None, percent=percent, max_percent=100, rng=random.Random(1))
    assert len(picked) == killed and picked == sorted(picked) and set(picked) <= set(pods)


def test_a_kill_over_the_blast_radius_is_refused_with_the_numbers() -> None:
    with pytest.raises(SafetyRefusal) as refused:
        pick_kill_targets(PODS, count=6, percent=None, max_percent=50, rng=random.Random(1))
    text = str(refused.value)
    assert "killing 6 of the 10 ready pods (60 %)" in text and "blast radius of 50 %" in text
    assert "--clover-max-kill-percent" in text and "Kill at most 5" in text
    with pytest.raises(SafetyRefusal) as only_one:
        pick_kill_targets(["solo"], count=None, percent=None, max_percent=50, rng=random.Random(1))
    assert "No kill of this service fits" in str(only_one.value)
    assert pick_kill_targets(["solo"], count=None, percent=None, max_percent=100, rng=random.Random(1)) == ["solo"]


def test_no_ready_pods_and_bad_arguments() -> None:
    with pytest.raises(BackendError):
        pick_kill_targets([], count=None, percent=None, max_percent=50, rng=random.Random(1))
    with pytest.raises(InvalidFault):
        pick_kill_targets(PODS, count=1, percent=10, max_percent=50, rng=random.Random(1))
    with pytest.raises(InvalidFault):
        pick_kill_targets(PODS, count=0, percent=None, max_percent=50, rng=random.Random(1))
    with pytest.raises(InvalidFault):
        pick_kill_targets(PODS, count=None, percent=0, max_percent=50, rng=random.Random(1))
    with pytest.raises(InvalidFault):
        pick_kill_targets(PODS, count=11, percent=None, max_percent=200, rng=random.Random(1))


names = st.lists(st.from_regex(r"[a-z]{1,6}-[0-9]{1,3}", fullmatch=True), min_size=1, max_size=40, unique=True)


@settings(max_examples=300, deadline=None)
@given(
    pods=names,
    count=st.none() | st.integers(min_value=1, max_value=50),
    percent=st.none() | st.floats(min_value=0.01, max_value=100),
    max_percent=st.floats(min_value=0.5, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_never_over_the_radius_and_deterministic_for_a_seed(
    pods: list[str], count: int | None, percent: float | None, max_percent: float, seed: int
) -> None:
    if count is not None and percent is not None:
        percent = None
    try:
        picked = pick_kill_targets(pods, count=count, percent=percent, max_percent=max_percent, rng=random.Random(seed))
    except SafetyRefusal:
        wanted = count if count is not None else 1 if percent is None else None
        if wanted is not None:
            assert wanted * 100 > max_percent * len(pods)
        return
    except InvalidFault:
        assert count is not None and count > len(pods)
        return
    assert 1 <= len(picked) and len(picked) * 100 <= max_percent * len(pods) + 1e-6
    assert len(set(picked)) == len(picked) and set(picked) <= set(pods)
    if count is not None:
        assert len(picked) == count
    shuffled = list(pods)
    random.Random(seed + 1).shuffle(shuffled)
    assert (
        pick_kill_targets(shuffled, count=count, percent=percent, max_percent=max_percent, rng=random.Random(seed))
        == picked
    )
