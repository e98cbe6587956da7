"""The kubernetes client's files of a kubeconfig's inline certificates and key: in a private folder per process,
never in the system's temp folder, and swept once their process is gone."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pytest_clover.backends.k8s import kubefiles
from pytest_clover.backends.k8s.settings import ClusterRef
from pytest_clover.runtime import RUNTIME_ENV

pytest.importorskip("kubernetes", reason="the k8s backend needs the official client: pip install kubernetes")

CA = b"-----BEGIN CERTIFICATE-----\nnot a real CA\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "runtime"
    monkeypatch.setenv(RUNTIME_ENV, str(folder))
    # Anything written to the system's temp folder lands here, where the test can see it.
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    kubefiles._own_folder.cache_clear()
    yield folder
    kubefiles._own_folder.cache_clear()


def _kubeconfig(path: Path) -> Path:
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "inline",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": base64.b64encode(CA).decode(),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate-data": base64.b64encode(CA).decode(),
                    "client-key-data": base64.b64encode(KEY).decode(),
                },
            }
        ],
        "contexts": [{"name": "inline", "context": {"cluster": "c", "user": "u"}}],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_inline_certificates_and_key_go_to_the_process_s_private_folder(runtime: Path, tmp_path: Path) -> None:
    from pytest_clover.cli.k8s import _client

    client = _client(False, str(_kubeconfig(tmp_path / "kubeconfig")), ClusterRef("inline", "https://127.0.0.1:6443"))
    try:
        configuration = client.configuration
        own = runtime / kubefiles.FOLDER / str(os.getpid())
        for path in (configuration.ssl_ca_cert, configuration.cert_file, configuration.key_file):
            assert Path(path).parent == own
        assert Path(configuration.key_file).read_bytes() == KEY
        assert stat.S_IMODE(own.stat().st_mode) == 0o700
        assert not list((tmp_path / "system-tmp").iterdir())
    finally:
        client.close()  # type: ignore[no-untyped-call]


def test_the_folders_of_processes_that_are_gone_are_swept(runtime: Path) -> None:
    base = runtime / kubefiles.FOLDER
    base.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead = base / gone.stdout.decode().strip()
    live = base / str(os.getppid())
    other = base / "notes"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "tmpfile").write_bytes(KEY)
    (base / "99999999").symlink_to(other)  # a link is never followed into, whatever its name

    own = Path(kubefiles.kube_files_dir())

    assert own == base / str(os.getpid()) and own.is_dir()
    assert not dead.exists()
    assert (live / "tmpfile").exists() and (other / "tmpfile").exists() and (base / "99999999").is_symlink()
    assert kubefiles.sweep_dead(base) == []
