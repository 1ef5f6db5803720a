"""Telegram front-end: each thread (a forum topic, or a reply chain) gets its own sandbox.

``controller.telegram.service.install(runtime)`` adds the webhook route
(``telegram_mode=webhook``) or the getUpdates loop (``telegram_mode=polling``) and the
service that drains running turns on shutdown. This package's ``__init__`` loads nothing,
so that ``controller.config`` can inherit ``settings.TelegramSettings`` without loading
python-telegram-bot.
"""
