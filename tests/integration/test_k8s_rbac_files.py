"""The RBAC files of the k8s backend (``pytest_clover/backends/k8s/rbac``) applied with the real kubectl to the
embedded mesh's Kubernetes API, and ``clover k8s check`` run against that API.

The embedded API stores RBAC objects and validates them as kube-apiserver does, but does not enforce them
(its token is cluster-admin): this shows the files are valid and apply as documented, not that they grant enough
on a real cluster — the preflight's access reviews are what check that there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_clover.backends.k8s.errors import rbac_dir
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.cli.main import main

pytestmark = pytest.mark.integration

KUBECTL = shutil.which("kubectl")
TIMEOUT = 60.0
RBAC = rbac_dir()
SUBJECT = {"kind": "ServiceAccount", "name": "pytest-clover", "namespace": "pytest-clover"}


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((RBAC / name).read_text()) if d]


def test_the_folder_holds_what_the_readme_names_and_deploy_mode_mirrors_the_role() -> None:
    files = sorted(p.name for p in RBAC.iterdir())
    expected = ["README.md", "bindings.yaml", "clusterrole.yaml", "ingress.yaml", "role.yaml", "rolebinding.yaml",
                "serviceaccount.yaml"]  # fmt: skip
    assert files == expected
    readme = (RBAC / "README.md").read_text()
    for name in expected[1:]:
        assert name in readme, name
    (role,) = documents("role.yaml")
    namespaced = next(d for d in documents("clusterrole.yaml") if d["metadata"]["name"] == "pytest-clover-namespaced")
    assert namespaced["rules"] == role["rules"]  # deploy mode grants exactly what existing mode does
    bound = [d for name in ("bindings.yaml", "rolebinding.yaml", "ingress.yaml") for d in documents(name)
             if d["kind"].endswith("Binding")]  # fmt: skip
    assert len(bound) == 4 and all(b["subjects"] == [SUBJECT] for b in bound)
    (namespace, account) = documents("serviceaccount.yaml")
    assert (account["metadata"]["name"], account["metadata"]["namespace"]) == (SUBJECT["name"], SUBJECT["namespace"])
    assert namespace["metadata"]["name"] == SUBJECT["namespace"]


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples a rule list grants; resourceNames only narrow a rule, so they are ignored."""
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_the_reapers_role_grants_nothing_the_role_does_not_hold() -> None:
    # kube-apiserver lets a Role be created only with rules its creator holds (RBAC escalation prevention): the
    # backend creates the reaper's Role with the identity these files bind.
    from pytest_clover.backends.k8s.deadman import DeadManSwitch

    manifests = DeadManSwitch(None, "clover-run", run_id="run", image="sdc:1").manifests()  # type: ignore[arg-type]
    (reaper,) = [m for m in manifests if m["kind"] == "Role"]
    (role,) = documents("role.yaml")
    assert _grants(reaper["rules"]) - _grants(role["rules"]) == set()
    created = {(m["apiVersion"].rpartition("/")[0], m["kind"].lower() + "s") for m in manifests}
    assert all(("create" in {v for g, r, v in _grants(role["rules"]) if (g, r) == c}) for c in created), created


class Kubectl:
    """The real kubectl against the mesh's API, with its own HOME and discovery cache."""

    def __init__(self, kubeconfig: Path, directory: Path) -> None:
        assert KUBECTL is not None
        self.command = [KUBECTL, f"--cache-dir={directory / 'cache'}"]
        home = directory / "home"
        home.mkdir(exist_ok=True)
        self.env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(kubeconfig)}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=TIMEOUT, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}{result.stdout}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture
def kubectl(sdc: LocalBackend, tmp_path: Path) -> Iterator[Kubectl]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    kubeconfig = sdc.info().get("kubeconfig")
    if not kubeconfig:
        pytest.skip(f"the mesh serves no Kubernetes API: {sdc.info().get('kube_api_error')}")
    run = Kubectl(Path(str(kubeconfig)), tmp_path)
    created_istio_system = run("get", "namespace", "istio-system", check=False).returncode != 0
    try:
        yield run
    finally:
        # The mesh is shared by the session: what the test applied is deleted again, whatever happened.
        run("delete", "--ignore-not-found", "--wait=false", "-n", "default", "-f", str(RBAC / "role.yaml"),
            "-f", str(RBAC / "rolebinding.yaml"), check=False)  # fmt: skip
        for name in ("bindings.yaml", "clusterrole.yaml", "ingress.yaml", "serviceaccount.yaml"):
            run("delete", "--ignore-not-found", "--wait=false", "-f", str(RBAC / name), check=False)
        if created_istio_system:
            run("delete", "namespace", "istio-system", "--ignore-not-found", "--wait=false", check=False)


def test_the_rbac_files_apply_as_the_readme_says(kubectl: Kubectl) -> None:
    # Server-side dry run first: every object is validated by the API and nothing is stored.
    kubectl("apply", "--dry-run=server", "-f", str(RBAC / "clusterrole.yaml"), "-f", str(RBAC / "bindings.yaml"))
    assert kubectl("get", "clusterrole", "pytest-clover", check=False).returncode != 0

    # Deploy mode.
    kubectl("apply", "-f", str(RBAC / "serviceaccount.yaml"))
    kubectl("apply", "-f", str(RBAC / "clusterrole.yaml"), "-f", str(RBAC / "bindings.yaml"))
    # Existing mode, in a namespace of the mesh.
    kubectl("apply", "-n", "default", "-f", str(RBAC / "role.yaml"), "-f", str(RBAC / "rolebinding.yaml"))
    # The ingress Role lives in istio-system, which a cluster with Istio has (the embedded mesh may not).
    if kubectl("get", "namespace", "istio-system", check=False).returncode != 0:
        kubectl("create", "namespace", "istio-system")
    kubectl("apply", "-f", str(RBAC / "ingress.yaml"))

    (role,) = documents("role.yaml")
    stored = kubectl.json("get", "role", "pytest-clover", "-n", "default")
    assert stored["rules"] == role["rules"]
    binding = kubectl.json("get", "rolebinding", "pytest-clover", "-n", "default")
    assert binding["subjects"] == [SUBJECT] and binding["roleRef"]["name"] == "pytest-clover"
    for name in ("pytest-clover", "pytest-clover-namespaced"):
        assert kubectl.json("get", "clusterrolebinding", name)["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}  # fmt: skip
    assert kubectl.json("get", "serviceaccount", "pytest-clover", "-n", "pytest-clover")["metadata"]["name"]
    assert kubectl.json("get", "role", "pytest-clover-ingress", "-n", "istio-system")["rules"][0]["verbs"] == [
        "get",
        "list",
    ]
    # Applying again changes nothing (the files are what the API stores: no defaulted field flips back and forth).
    again = kubectl("apply", "-f", str(RBAC / "clusterrole.yaml"), "-f", str(RBAC / "bindings.yaml")).stdout
    assert again.count("unchanged") == 4, again


def test_clover_k8s_check_against_the_mesh(sdc: LocalBackend, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = sdc.info().get("kubeconfig")
    if not kubeconfig:
        pytest.skip(f"the mesh serves no Kubernetes API: {sdc.info().get('kube_api_error')}")
    code = main(["k8s", "check", "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Istio CRDs networking.istio.io" in out and "0 missing" in out
    # Existing mode in `default`: the SDC app runs there with sidecars, but the namespace is not opted in.
    assert main(["k8s", "check", "--kubeconfig", str(kubeconfig), "--namespace", "default"]) == 1
    out = capsys.readouterr().out
    assert "kubectl annotate namespace default clover.opnfv.org/chaos=enabled" in out
