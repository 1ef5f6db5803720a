"""Discord front-end: each Discord thread gets its own sandbox.

``controller.discord.service.install(runtime)`` adds ``POST /discord/interactions`` to the
chat port and the service that starts the REST client and drains running turns on
shutdown. HTTP interactions, not the gateway: Discord posts each command to whichever
replica its load balancer picks, so no replica holds a connection the others depend on
(README, "Discord"). This package's ``__init__`` loads nothing, so that
``controller.config`` can inherit ``settings.DiscordSettings`` without loading hikari.
"""
