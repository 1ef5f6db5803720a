import pytest

from controller.filenames import BadFilename, clean_filename, collision


@pytest.mark.parametrize(
    "name",
    [
        "../secret",
        "a/../../b",
        "/etc/passwd",
        "",
        "   ",
        "a//b",
        "./a",
        "bad\x00name",
        "new\nline",
        ".threadbox-manifest",
        "x" * 256,
        "/".join(["d" * 200] * 6),
    ],
)
def test_refused(name: str) -> None:
    with pytest.raises(BadFilename):
        clean_filename(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("out.csv", "out.csv"),
        ("data/2024/q1.parquet", "data/2024/q1.parquet"),
        ("données été.csv", "données été.csv"),
        ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt"),  # NFC-normalised, unicode kept
        ("报告.xlsx", "报告.xlsx"),
        # One rule: "/" is the only separator, so a backslash or a colon is part of the name.
        ("a\\b.txt", "a\\b.txt"),
        ("\\\\server\\share", "\\\\server\\share"),
        ("a:b.txt", "a:b.txt"),
        ("C:\\windows", "C:\\windows"),
        ("\u212a.txt", "K.txt"),  # KELVIN SIGN: its NFC form is a plain K
        (".hidden", ".hidden"),
    ],
)
def test_kept(name: str, expected: str) -> None:
    assert clean_filename(name) == expected


@pytest.mark.parametrize(
    ("name", "existing", "clash"),
    [
        ("sub", ["sub/a.txt"], "'sub' is a folder"),
        ("sub/a.txt/b", ["sub/a.txt"], "'sub/a.txt' is a file"),
        ("a/b/c/d.txt", ["a/b"], "'a/b' is a file"),
        ("sub/a.txt", ["sub/a.txt", "sub/b.txt"], None),  # replacing a file is no collision
        ("sub2", ["sub/a.txt"], None),
        ("sub", ["subway/a.txt", "sub.txt"], None),
        ("a", [], None),
    ],
)
def test_collision(name: str, existing: list[str], clash: str | None) -> None:
    reason = collision(name, existing)
    assert (reason is None) if clash is None else (reason is not None and clash in reason)
