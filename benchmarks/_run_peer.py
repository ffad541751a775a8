"""Measure llama-cpp-python with the shared harness; prints one JSON object.

Runs inside the peer's own virtual environment (``build/peer-venv``, made by
``benchmarks/compare.py --with-peer``), so it imports nothing of ours except
``_harness`` (stdlib only) from this folder:

    build/peer-venv/bin/python benchmarks/_run_peer.py --model M --threads 2

Settings match ours: n_ctx 2048, n_batch/n_ubatch 512, mmap, F16 KV cache,
flash attention on (what llama.cpp's "auto" resolves to on the CPU; the
peer's own default is off), greedy (temperature 0), the same repeat penalty
over the same 64-token window, and no prompt cache (``reset()`` first).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Iterator, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h  # noqa: E402


class PeerAdapter:
    def __init__(self, args: Any) -> None:
        import llama_cpp

        self.lc = llama_cpp
        self.args = args
        self.llm: Optional[Any] = None
        self._count = 0

    def load(self) -> None:
        self.llm = self.lc.Llama(
            model_path=self.args.model,
            n_ctx=self.args.context_size,
            n_batch=512,
            n_ubatch=512,
            n_threads=self.args.threads,
            n_threads_batch=self.args.threads,
            n_gpu_layers=0,
            use_mmap=True,
            flash_attn=True,
            verbose=False,
        )

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def trivial_calls(self) -> Any:
        llm = self.llm
        return {
            "llama_n_ctx(ctx)": ("f(c)", {"f": self.lc.llama_n_ctx, "c": llm._ctx.ctx}),  # type: ignore[union-attr]
            "Llama.n_ctx()": ("m()", {"m": llm.n_ctx}),  # type: ignore[union-attr]
        }

    def tokenize(self, text: str) -> List[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)  # type: ignore[union-attr,no-any-return]

    def detokenize(self, ids: List[int]) -> str:
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")  # type: ignore[union-attr,no-any-return]

    def process(self, text: str) -> None:
        llm = self.llm
        llm.reset()  # type: ignore[union-attr]
        llm.eval(self.tokenize(text))  # type: ignore[union-attr]

    def _kwargs(self, n: int) -> Dict[str, Any]:
        return {"max_tokens": n, "temperature": 0.0, "repeat_penalty": self.args.repeat_penalty}

    def generate(self, text: str, n: int) -> int:
        self.llm.reset()  # type: ignore[union-attr]
        r = self.llm.create_completion(text, **self._kwargs(n))  # type: ignore[union-attr]
        return int(r["usage"]["completion_tokens"])

    def stream(self, text: str, n: int) -> Iterator[str]:
        self.llm.reset()  # type: ignore[union-attr]
        count = 0
        finish = None
        for chunk in self.llm.create_completion(text, stream=True, **self._kwargs(n)):  # type: ignore[union-attr]
            choice = chunk["choices"][0]
            finish = choice.get("finish_reason") or finish
            count += 1
            yield choice["text"]
        # one chunk per token, except that the final chunk may carry only the finish reason
        self._count = n if finish == "length" else count

    def last_count(self) -> int:
        return self._count


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    h.add_common_args(parser)
    args = h.finish_args(parser.parse_args(argv))
    import llama_cpp

    if args.serve:
        h.serve(PeerAdapter(args), args)
        return 0
    result = h.run_suite(PeerAdapter(args), args)
    result["tool"] = "llama-cpp-python"
    result["version"] = getattr(llama_cpp, "__version__", "?")
    h.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
