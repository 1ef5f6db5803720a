"""The no-follow writer against a real directory with planted links, files and folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.filenames import NameConflict
from controller.nofollow import TMP_PREFIX, open_regular, place


def write(root: Path, name: str, data: bytes = b"new") -> os.stat_result:
    return place(root, name, lambda fh: fh.write(data))


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed) with what it is."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(dirpath) / entry
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else path.read_text()
            found[path.relative_to(root).as_posix()] = kind
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.mkdir()
    (target / "secret").write_text("host file")
    return target


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


def test_creates_folders_and_replaces_files(ws: Path) -> None:
    st = write(ws, "a/b/c.txt", b"12345")
    assert (ws / "a/b/c.txt").read_bytes() == b"12345" and st.st_size == 5
    assert st.st_mtime_ns == (ws / "a/b/c.txt").stat().st_mtime_ns
    write(ws, "a/b/c.txt", b"6")
    assert tree(ws) == {"a": "dir", "a/b": "dir", "a/b/c.txt": "6"}


@pytest.mark.parametrize("name", ["link", "dirlink/x", "dirlink/deeper/x", "sub/link"])
def test_a_link_anywhere_in_the_path_is_refused_and_nothing_outside_changes(
    ws: Path, outside: Path, name: str
) -> None:
    (ws / "link").symlink_to(outside / "secret")
    (ws / "dirlink").symlink_to(outside)
    (ws / "sub").mkdir()
    (ws / "sub" / "link").symlink_to(outside / "secret")
    # Positive control: the links lead to a place this process may write, so a followed
    # link would change what the assertions below look at.
    assert (ws / "dirlink" / "secret").read_text() == "host file" and os.access(outside, os.W_OK)
    before = tree(ws)
    with pytest.raises(NameConflict, match="symbolic link"):
        write(ws, name)
    assert (outside / "secret").read_text() == "host file"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert tree(ws) == before  # no temporary file, no new folder


def test_the_workspace_root_itself_is_never_a_link(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "rootlink").symlink_to(outside)
    with pytest.raises(OSError):
        write(tmp_path / "rootlink", "x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


@pytest.mark.parametrize(
    ("existing", "name", "why"),
    [
        ("folder", "sub", "'sub' is a folder"),
        ("file", "sub/a.txt/b", "'sub/a.txt' is a file"),
    ],
)
def test_a_file_and_a_folder_never_share_a_name(ws: Path, existing: str, name: str, why: str) -> None:
    (ws / "sub").mkdir()
    (ws / "sub" / "a.txt").write_text("kept")
    before = tree(ws)
    with pytest.raises(NameConflict, match=why):
        write(ws, name)
    assert tree(ws) == before


def test_a_failed_fill_leaves_the_old_file_and_no_temporary(ws: Path) -> None:
    (ws / "f.txt").write_text("old")

    def broken(fh: object) -> None:
        raise RuntimeError("download cut")

    with pytest.raises(RuntimeError):
        place(ws, "f.txt", broken)
    assert tree(ws) == {"f.txt": "old"}
    assert not any(p.name.startswith(TMP_PREFIX) for p in ws.iterdir())


def test_an_upload_lands_on_the_decomposed_twin_code_created(ws: Path) -> None:
    (ws / "re\u0301sume\u0301").mkdir()
    (ws / "re\u0301sume\u0301" / "cafe\u0301.txt").write_text("old")
    write(ws, "r\u00e9sum\u00e9/caf\u00e9.txt", b"new")
    assert tree(ws) == {"re\u0301sume\u0301": "dir", "re\u0301sume\u0301/cafe\u0301.txt": "new"}


@pytest.mark.parametrize("name", ["../x", "a/../x", "a//b", "./a"])
def test_unclean_names_are_refused(ws: Path, name: str) -> None:
    with pytest.raises(ValueError):
        write(ws, name)
    assert tree(ws) == {}


def test_reading_never_follows_a_link_nor_blocks_on_a_fifo(ws: Path, outside: Path) -> None:
    (ws / "sub").mkdir()
    (ws / "sub" / "f.txt").write_text("mine")
    (ws / "link").symlink_to(outside / "secret")
    (ws / "dirlink").symlink_to(outside)
    os.mkfifo(ws / "fifo")
    with open_regular(ws, "sub/f.txt") as fh:
        assert fh.read() == b"mine"
    for name, why in [
        ("link", "symbolic link"),
        ("dirlink/secret", "symbolic link"),
        ("fifo", "not a regular"),
    ]:
        with pytest.raises(NameConflict, match=why), open_regular(ws, name):
            pass
    with pytest.raises(FileNotFoundError), open_regular(ws, "gone.txt"):
        pass
