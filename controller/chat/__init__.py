"""The chat seam: one small interface between chat platforms and threadbox's turns.

Each platform is a subpackage (``controller/slack``, ``controller/telegram``...) with thin
listeners and an ``install(runtime)`` that adds its webhook routes to
``runtime.chat_routers`` (served on the chat port) and its (start, stop) pair to
``runtime.services``. Adding a front-end is one new folder, plus its settings and the
line in ``controller/runtime.py`` that installs it.

The contract (``controller/chat/base.py``):

* Inbound. A listener verifies the delivery, parses it into an ``Incoming`` (the thread's
  ``ThreadKey``, the user, the text, the platform's message id, the store ``claims`` that
  make retries and double deliveries run once, ``Attachment``s not yet downloaded, and an
  ``origin`` the front-end keeps to reply with), or None for a message it does not
  answer, and awaits ``Conversations.take`` (``turns.py``), which claims and returns at
  once; the listener then acks. Claim keys are the platform's: ``<platform>-event/<id>``.
* Outbound. The front-end is a ``FrontEnd`` whose ``reply(msg, thread_id)`` returns a
  ``Reply`` for one turn: ``start(sandbox_live)`` (its first platform call: a failure before
  it succeeds releases the claims so the platform's retry gets the turn), ``note(text)``,
  ``show(event)`` for each ``controller.events`` event (status, code, output, images,
  files, errors, agent text), ``finish()``. Optional hooks: ``running`` (a context around
  the agent's turn), ``finished`` (after the reply) and ``count_error``.
* Shared, once for every front-end (``turns.py``, ``attachments.py``): claims, the thread
  record (``ensure_thread``), "only in an active thread", the code-size limit,
  attachments through the one upload pipeline (``controller/uploads.py``: names, quotas,
  a sentence on refusal and nothing written), turn order (``SandboxManager.turn``), the
  apology when a turn fails, and owned tasks drained on shutdown (``drain``).
* Helpers for replies: ``throttle.py`` (edits at most once per interval), ``transcript.py``
  (a turn as Markdown text), ``files.py`` (changed files to post, within a size limit).
* Chat commands (``commands.py``; README "Chat commands"): before the handoff desk,
  ``Conversations.commands`` answers ``forget state`` and ``fork`` itself, through
  ``controller/threadops.py`` as the HTTP API does. A fork needs the optional hook
  ``open_thread`` (a new thread beside the original, its first message, its key and a link);
  without it a fork is refused in a sentence.
* ``fake.py``: an in-tree front-end that records what a turn showed, for unit tests.
* Operator handoff (``handoff.py`` decides, ``desk.py`` acts; README "Handing a thread to a
  person"): before the agent, ``Conversations.desk.intercept`` may hand a thread to a person or
  forward its message to the operator destination. A front-end with one sets
  ``operator_destination``, implements ``to_operator``, ``to_user`` and ``reply_in``, and hands
  replies in its operator threads to ``Conversations.desk.take`` as ``OperatorMessage``s.

Blocking work (the store, files) goes through ``asyncio.to_thread``: the loop never blocks.
"""
