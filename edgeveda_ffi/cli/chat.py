"""``edgeveda chat``: an interactive conversation on one engine.

Each line read is a user message; the answer streams to stdout. The history
lives in a :class:`ChatSession` (the model's chat template; the prompt cache
means a turn processes only its new tokens). ``/reset`` forgets the history,
``/exit`` (or end of input) leaves, Ctrl-C stops the current answer and
returns to the prompt. With stdin not a terminal (a pipe, a test) the same
loop runs without the prompt and banner.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import EdgeVedaException
from .common import EXIT_OK, error_line, write_stream

if TYPE_CHECKING:
    from .. import ChatSession, EdgeVeda

__all__ = ["run_chat"]

HELP = """commands:
  /reset   forget the conversation (keeps the system prompt)
  /exit    leave (also /quit, or Ctrl-D)
  /help    this text
Ctrl-C stops the current answer; the partial answer stays in the history."""

_EXIT = {"/exit", "/quit", "/bye"}


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_chat(
    engine: EdgeVeda,
    *,
    system: Optional[str] = None,
    verbose: bool = False,
    write: Callable[[str], None],
    read: Callable[[str], str] = input,
    interactive: Optional[bool] = None,
) -> int:
    """The chat loop; returns the exit code (0 when the user leaves)."""
    if interactive is None:
        interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:  # pragma: no cover - not on every platform
            pass
        _note(
            f"Chatting with {engine.model_info.name}. /help for commands, "
            "/exit or Ctrl-D to leave, Ctrl-C stops an answer."
        )
    session = engine.chat_session(system_prompt=system)
    prompt = ">>> " if interactive else ""
    while True:
        try:
            line = read(prompt)
        except EOFError:
            if interactive:
                write("\n")
            return EXIT_OK
        except KeyboardInterrupt:
            _note("\n(use /exit or Ctrl-D to leave)")
            continue
        try:
            if _turn(engine, session, line.strip(), write, verbose):
                return EXIT_OK
        except KeyboardInterrupt:  # between two answers: stay in the chat
            _note("\n(use /exit or Ctrl-D to leave)")


def _turn(
    engine: EdgeVeda,
    session: ChatSession,
    text: str,
    write: Callable[[str], None],
    verbose: bool,
) -> bool:
    """Handle one input line; True when the user leaves."""
    if not text:
        return False
    if text.startswith("/"):
        cmd = text.split()[0].lower()
        if cmd in _EXIT:
            return True
        if cmd == "/reset":
            session.reset()
            _note("(conversation reset)")
        elif cmd in ("/help", "/?"):
            _note(HELP)
        else:
            _note(f"unknown command {cmd} (/help lists them)")
        return False
    try:
        interrupted = write_stream(session.stream(text), write)
    except EdgeVedaException as exc:
        write("\n")
        _note(f"edgeveda: error: {error_line(exc)} (/reset starts over)")
        return False
    write("\n")
    if interrupted:
        _note("(answer stopped)")
    elif verbose:
        st = engine.last_stats
        tps = st.tokens_per_second
        _note(
            f"({st.prompt_tokens} prompt tokens, {st.cached_tokens} cached; "
            f"{st.completion_tokens} generated" + (f" at {tps:.1f} tok/s" if tps else "") + ")"
        )
    return False
