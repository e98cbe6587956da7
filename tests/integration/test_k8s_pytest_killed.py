"""The dead-man switch end to end: pytest on the k8s backend is SIGKILLed mid-fault, and the fault goes anyway.

The "cluster" is the session's embedded mesh, reached only through its Kubernetes API. A child pytest deploys the SDC
into a namespace of its own, injects an abort and then hangs; it is SIGKILLed. Nobody runs ``clover``: the reaper
pod in that namespace must put the VirtualService back within 30 s and record an Event. ``clover cleanup --context``
then sweeps the dead run's namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_clover.backends import BackendOptions, backend_class
from pytest_clover.backends.k8s.backend import KubernetesBackend
from pytest_clover.backends.k8s.kubefiles import FOLDER, sweep_dead
from pytest_clover.backends.k8s.rest import KINDS
from pytest_clover.backends.local.client import LocalBackend
from pytest_clover.runtime import RUNTIME_ENV
from tests.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest.importorskip("kubernetes", reason="the k8s backend needs the official client: pip install kubernetes")

ROOT = Path(__file__).resolve().parents[2]
SDC = ROOT / "fixtures" / "sdc"

VICTIM = """
import json, pathlib, time

def test_victim(mesh, faults):
    faults.abort("http-lb", status=503, percent=100, headers={"x-clover-victim": "1"})
    pathlib.Path(%r).write_text(json.dumps({"namespace": mesh.backend.namespace}))
    time.sleep(600)
"""


def _faulted(vs: dict[str, Any] | None) -> bool:
    return vs is not None and any("fault" in r for r in (vs.get("spec") or {}).get("http") or [])


def test_a_sigkilled_pytest_leaves_no_fault_behind(mesh: LocalBackend, tmp_path: Path) -> None:
    kubeconfig = str(mesh.kubeconfig)
    marker = tmp_path / "injected.json"
    (tmp_path / "test_victim.py").write_text(VICTIM % str(marker))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    child_tmp = tmp_path / "tmp"  # the child's temp folder: what a SIGKILL leaves there is seen, and is ours to remove
    child_tmp.mkdir()
    env["TMPDIR"] = str(child_tmp)
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "test_victim.py", "-q", "-s", "-p", "no:randomly", "-p", "no:cacheprovider",
         "--clover-backend=k8s", f"--clover-kubeconfig={kubeconfig}", f"--clover-topology={SDC}",
         f"--clover-report-dir={tmp_path / 'reports'}"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    observer = backend_class("k8s").from_options(
        BackendOptions(topology=SDC, workdir=tmp_path, settings={"kubeconfig": kubeconfig, "run_id": "observer"})
    )
    assert isinstance(observer, KubernetesBackend)
    try:
        wait_for(lambda: marker.exists() or child.poll() is not None, 180, what="the child pytest to inject its fault")
        assert marker.exists(), (child.stdout.read() if child.stdout else b"").decode()[-3000:]
        namespace = json.loads(marker.read_text())["namespace"]
        vs_kind = observer._kind("VirtualService")
        assert _faulted(observer.rest.get(vs_kind, namespace, "http-lb")), "the fault is not in force"

        os.killpg(child.pid, signal.SIGKILL)  # pytest and anything it started: no teardown, no revert
        child.wait(10)
        killed = time.monotonic()
        # The kubeconfig's inline CA went to the child's own folder in the private runtime folder, not to the
        # temp folder (where the client's files outlived a killed run); the next process to read a kubeconfig
        # removes that folder.
        left = [p.name for p in child_tmp.iterdir() if p.is_file() and b"-----BEGIN" in p.read_bytes()]
        assert not left, f"a SIGKILLed run left certificate files in the temp folder: {left}"
        own = Path(os.environ[RUNTIME_ENV]) / FOLDER / str(child.pid)
        assert any(b"-----BEGIN CERTIFICATE" in p.read_bytes() for p in own.iterdir()), sorted(own.iterdir())
        assert own in sweep_dead(own.parent) and not own.exists()
        wait_for(
            lambda: not _faulted(observer.rest.get(vs_kind, namespace, "http-lb")),
            30,
            what="the reaper to revert the fault a SIGKILLed pytest left",
        )
        took = time.monotonic() - killed
        print(f"fault reverted {took:.1f} s after the SIGKILL (lease 15 s)")
        assert took <= 30

        def reaper_log() -> str:
            pods = observer.rest.list(KINDS["Pod"], namespace, labels="app.kubernetes.io/component=dead-man-switch")
            names = [p["metadata"]["name"] for p in pods.get("items") or []]
            return "\n".join(
                str(
                    observer.rest.request(
                        "GET", KINDS["Pod"].path(namespace, name, "log"), query={"container": "app"}, raw=True
                    )
                )
                for name in names
            )

        def recorded() -> bool:
            events = observer.rest.list(KINDS["Event"], namespace).get("items") or []
            return any(e.get("reason") == "CloverFaultReverted" for e in events)

        # The Event follows the revert (and the ledger update) by a request or two.
        wait_for(recorded, 10, what=f"the reaper's CloverFaultReverted Event; its log:\n{reaper_log()}")

        # After the fact, what `clover cleanup --context C --force` does for k8s: the dead run's namespace is swept
        # (force: without waiting the two lease durations after which a run counts as dead; the CLI's --force would
        # also stop this session's own embedded mesh).
        lines = KubernetesBackend.sweep(
            force=True,
            settings={
                "context": observer.cluster.context,
                "kubeconfig": kubeconfig,
                "allowed_contexts": observer.cluster.context,
            },
        )
        assert any(namespace in line and "deleted" in line for line in lines), lines

        def gone_or_going() -> bool:
            ns = observer.rest.get(KINDS["Namespace"], None, namespace, missing_ok=True)
            return ns is None or bool(ns["metadata"].get("deletionTimestamp"))

        wait_for(gone_or_going, 30, what=f"clover cleanup to delete namespace {namespace}")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
        observer.close()
