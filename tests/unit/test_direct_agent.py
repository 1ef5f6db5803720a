from controller.agent.direct import code_blocks


def test_fenced_python_blocks_are_found_in_order() -> None:
    text = "look:\n```python\nprint(1)\n```\nand\n```\nx = 2\n```\nnot this: ```bash\nls\n```"
    assert code_blocks(text) == ["print(1)\n", "x = 2\n"]


def test_no_fence_no_code() -> None:
    assert code_blocks("what is 2+2?") == []
