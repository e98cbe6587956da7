"""The per-user runtime folder is private, and a folder that is not is refused, never used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_clover.errors import InsecurePath
from pytest_clover.runtime import RUNTIME_ENV, private_dir, runtime_dir


def test_it_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNTIME_ENV, str(tmp_path / "runtime"))
    path = runtime_dir()
    assert path == tmp_path / "runtime" and (path.stat().st_mode & 0o777) == 0o700


def test_a_folder_others_may_write_to_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "pytest-clover-0"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # mkdir's mode is cut by the umask
    with pytest.raises(InsecurePath, match=r"can be written by its group or by others \(mode 777\).*chmod 700"):
        private_dir(planted)


def test_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    link = tmp_path / "runtime"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InsecurePath, match="is not a folder but a symbolic link"):
        private_dir(link)


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a folder to another user")
def test_a_folder_another_user_owns_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)  # nobody
    with pytest.raises(InsecurePath, match=r"belongs to user id 65534, not to you \(0\)"):
        private_dir(theirs)
