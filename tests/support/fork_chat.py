"""What every chat front-end's test of ``fork`` and ``forget state`` does, through a small
adapter per platform (``Chat``): a variable and a file in a thread, ``fork``, the fork's turn
that changes both, the original's turn after it (untouched), then ``forget state`` in the
original and its next turn, which finds the file but not the variable."""

from __future__ import annotations

from typing import Literal, Protocol, TypeVar

from controller.chat.commands import forgotten

T = TypeVar("T")  # how a platform's test names a thread

SET_UP = "x = 41\nopen('data.txt', 'w').write('orig')\nprint('set', 'up')"
SET = "set up"
IN_FORK = "print('fork has', x, open('data.txt').read())\nx = 99\nopen('data.txt', 'w').write('fork')"
IN_ORIGINAL = "print('original has', x, open('data.txt').read())"
AFTER_FORGET = "print('file says', open('data.txt').read())\nprint(x)"


class Chat(Protocol[T]):
    def run(self, thread: T, code: str) -> None:
        """A user's message in ``thread`` that runs ``code``."""

    def command(self, thread: T, name: Literal["fork", "forget"]) -> None:
        """The user's ``fork`` or ``forget state``, as the platform's users say them."""

    def wait(self, thread: T, *needles: str) -> str:
        """What the bot said in ``thread``, once it says all of ``needles``."""

    def fork_of(self, thread: T) -> tuple[T, str]:
        """The thread the bot opened for a fork of ``thread``, and where the original says it is."""


def fork_and_forget(chat: Chat[T], original: T) -> T:
    """After SET_UP ran in ``original``; returns the fork's thread."""
    chat.command(original, "fork")
    fork, where = chat.fork_of(original)
    chat.wait(original, f"Forked into {where}. Forked with 1 file(s)", "saved just now")
    chat.wait(fork, "is a fork of")
    chat.run(fork, IN_FORK)
    chat.wait(fork, "fork has 41 orig")
    chat.run(original, IN_ORIGINAL)
    chat.wait(original, "original has 41 orig")
    chat.command(original, "forget")
    chat.wait(original, forgotten(True))
    chat.run(original, AFTER_FORGET)
    chat.wait(original, "file says orig", "NameError")
    return fork
