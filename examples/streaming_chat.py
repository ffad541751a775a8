"""A streaming chat: the model's own chat template, history kept, answers streamed.

    python examples/streaming_chat.py                      # two scripted turns
    python examples/streaming_chat.py "Hi!" "Tell me more."  # your turns
    python examples/streaming_chat.py --interactive        # type; empty line or Ctrl-D ends

The second turn shows the prompt cache: only the new turn's tokens are
processed, the rest of the conversation comes from the KV cache.

--model takes a model id or a GGUF file (default: $EDGEVEDA_MODEL, else the
default model, placed by the model manager on first use).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator, List

from edgeveda_ffi import DEFAULT_MODEL_ID, ChatSession, EdgeVeda, ModelManager

DEFAULT_TURNS = ["What is the capital of France?", "What is it famous for?"]


def turns_from(args: argparse.Namespace) -> Iterator[str]:
    if not args.interactive:
        yield from args.turns or DEFAULT_TURNS
        return
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return
        if not line:
            return
        yield line


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("turns", nargs="*", help="user messages (default: two sample turns)")
    parser.add_argument("--model", default=os.environ.get("EDGEVEDA_MODEL", DEFAULT_MODEL_ID))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="0 = auto")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--system", default="You are a helpful assistant. Answer briefly.")
    parser.add_argument("--interactive", action="store_true")
    args = parser.parse_args(argv)

    path = ModelManager().resolve(args.model)  # a file as is; an id fetched once, verified
    with EdgeVeda(path, context_size=2048, num_threads=args.threads) as llm:
        session: ChatSession = llm.chat_session(
            system_prompt=args.system,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            seed=7,
        )
        for turn in turns_from(args):
            if not args.interactive:
                print(f"you> {turn}")
            print("assistant> ", end="", flush=True)
            for piece in session.stream(turn):  # whole UTF-8 characters, as they come
                print(piece, end="", flush=True)
            st = llm.last_stats
            print(
                f"\n  [{st.prompt_tokens} prompt tokens, {st.cached_tokens} from the cache; "
                f"{st.completion_tokens} generated; first token after {st.first_token_ms:.0f} ms; "
                f"{st.finish_reason.value}]"
            )
        print(f"({len(session.history)} messages in the history)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
