from controller.agent.direct import code_blocks


def test_fenced_python_blocks_are_found_in_order() -> None:
    text = "look:\n```python\nprint(1)\n```\nand\n```\nx = 2\n```\nnot this: ```bash\nls\n```"
    assert code_blocks(text) == ["print(1)\n", "x = 2\n"]


def test_no_fence_no_code() -> None:
    assert code_blocks("what is 2+2?") == []


def test_composer_shaped_blocks_keep_their_first_line() -> None:
    """Slack's composer sends no language and no newline after the fence."""
    assert code_blocks("```print(1)```") == ["print(1)"]
    assert code_blocks("```(a, b) = 1, 2\nprint(a + b)```") == ["(a, b) = 1, 2\nprint(a + b)"]
    assert code_blocks("```import os\nprint(os.sep)```") == ["import os\nprint(os.sep)"]
    assert code_blocks("run ```x = 1``` then ```print(x)```") == ["x = 1", "print(x)"]
