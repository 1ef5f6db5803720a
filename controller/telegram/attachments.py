"""Documents and photos on a Telegram message, as the chat seam's ``Attachment``s: getFile,
then the download from the Bot API's file URL, both through python-telegram-bot."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Bot
from telegram.error import TelegramError

from controller.chat.base import AttachmentError
from controller.chat.download import within
from controller.telegram.inbound import FileRef


@dataclass(frozen=True)
class TelegramFile:
    ref: FileRef
    bot: Bot
    limit: int  # bytes; 0: none

    @property
    def label(self) -> str:
        return self.ref.name

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def size(self) -> int:
        return self.ref.size

    async def fetch(self) -> bytes:
        try:
            file = await self.bot.get_file(self.ref.file_id)
            within(file.file_size or 0, self.limit)  # Telegram's word for it, before the download
            data = bytes(await file.download_as_bytearray())
        except TelegramError as exc:
            raise AttachmentError(f"Telegram did not give it: {exc.message}") from exc
        within(len(data), self.limit)
        return data
