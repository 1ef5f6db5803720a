import pytest

from controller.filenames import BadFilename, clean_filename


@pytest.mark.parametrize(
    "name",
    [
        "../secret",
        "a/../../b",
        "/etc/passwd",
        "\\\\server\\share",
        "C:\\windows",
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
        ("dir\\file.txt", "dir/file.txt"),
        (".hidden", ".hidden"),
    ],
)
def test_kept(name: str, expected: str) -> None:
    assert clean_filename(name) == expected
