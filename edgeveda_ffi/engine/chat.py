"""``ChatSession``: a conversation kept on one engine, in the model's template.

Each turn renders the whole history with the model's chat template; the
native prompt cache recognises the already-processed prefix, so a new turn
processes only its own tokens (see ``GenerateResult.stats.cached_tokens``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

from .config import GenerationParams
from .results import GenerateResult

if TYPE_CHECKING:
    from .llm import EdgeVeda

__all__ = ["ChatSession"]


class ChatSession:
    """A chat history bound to an :class:`EdgeVeda` engine.

    Args:
        engine: the engine that answers.
        system_prompt: an optional first ``system`` message.
        **defaults: generation parameters for every turn (``max_tokens`` ...).
    """

    def __init__(
        self, engine: EdgeVeda, system_prompt: Optional[str] = None, **defaults: Any
    ) -> None:
        self.engine = engine
        self.system_prompt = system_prompt
        self.defaults = GenerationParams.from_kwargs(engine.defaults, **defaults)
        self.messages: List[Dict[str, str]] = []
        self.last_result: Optional[GenerateResult] = None
        self.reset()

    def reset(self) -> None:
        """Start over: forget the history (keeping the system prompt) and the KV cache."""
        self.messages = []
        if self.system_prompt:
            self.messages.append({"role": "system", "content": self.system_prompt})
        self.last_result = None
        if not self.engine.closed:
            self.engine.reset()

    def send(self, message: str, **params: Any) -> GenerateResult:
        """Add a user message, generate the answer, add it to the history."""
        p = GenerationParams.from_kwargs(self.defaults, **params)  # validated first
        prompt = self._prompt_with(message)
        result = self.engine.generate(prompt, p)
        self._commit(message, result.text)
        self.last_result = result
        return result

    def stream(self, message: str, **params: Any) -> Iterator[str]:
        """Like :meth:`send`, yielding pieces; the answer joins the history when
        the stream ends (also when it is left early: the partial answer)."""
        p = GenerationParams.from_kwargs(self.defaults, **params)  # validated first
        prompt = self._prompt_with(message)
        pieces: List[str] = []
        with self.engine.stream(prompt, p) as s:
            try:
                for piece in s:
                    pieces.append(piece)
                    yield piece
            finally:
                self._commit(message, "".join(pieces))

    def _prompt_with(self, message: str) -> str:
        turn = {"role": "user", "content": message}
        return self.engine.apply_chat_template([*self.messages, turn])

    def _commit(self, message: str, answer: str) -> None:
        self.messages.append({"role": "user", "content": message})
        self.messages.append({"role": "assistant", "content": answer})

    @property
    def history(self) -> List[Dict[str, str]]:
        """A copy of the messages so far."""
        return [dict(m) for m in self.messages]

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"<ChatSession {len(self.messages)} messages on {self.engine!r}>"
