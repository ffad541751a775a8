"""Structured extraction: a GBNF grammar makes the model answer in exactly one JSON shape.

    python examples/json_extraction.py
    python examples/json_extraction.py "Dr. Mei Tanaka, 52, runs a clinic in Osaka."

The grammar below allows only ``{"name": "...", "age": N, "city": "..."}``: the
sampler masks every token that would leave it, so even a 135M-parameter model
produces parseable JSON with these keys, in this order. (``edgeveda generate
--json`` uses a general JSON grammar; ``--grammar FILE`` takes one like this.)

--model takes a model id or a GGUF file (default: $EDGEVEDA_MODEL, else the
default model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

from edgeveda_ffi import DEFAULT_MODEL_ID, EdgeVeda, FinishReason, ModelManager

PERSON_GBNF = r"""
root    ::= "{" ws name "," ws age "," ws city ws "}"
name    ::= "\"name\":" ws string
age     ::= "\"age\":" ws integer
city    ::= "\"city\":" ws string
string  ::= "\"" [A-Za-z .'-]{1,32} "\""
integer ::= [1-9] [0-9]{0,2}
ws      ::= " "?
"""

TEXTS = [
    "Maria Lopez is a 34-year-old architect who lives in Madrid.",
    "Born in Toronto, 61 years ago, Samuel Green still lives there and teaches piano.",
]


def extract(llm: EdgeVeda, text: str, max_tokens: int) -> Optional[Dict[str, Any]]:
    messages = [
        {"role": "system", "content": "You extract facts as JSON."},
        {"role": "user", "content": f"Give the person's name, age and city as JSON.\nText: {text}"},
    ]
    result = llm.chat(messages, grammar=PERSON_GBNF, temperature=0, max_tokens=max_tokens)
    if result.finish_reason is FinishReason.LENGTH:
        print(f"  (stopped at {max_tokens} tokens before the object was complete)")
        return None
    record: Dict[str, Any] = json.loads(result.text)  # the grammar guarantees the shape
    return record


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="sentences to extract from (default: two samples)")
    parser.add_argument("--model", default=os.environ.get("EDGEVEDA_MODEL", DEFAULT_MODEL_ID))
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=0, help="0 = auto")
    args = parser.parse_args(argv)

    path = ModelManager().resolve(args.model)
    records = []
    with EdgeVeda(path, context_size=1024, num_threads=args.threads) as llm:
        for text in args.texts or TEXTS:
            print(f"text:   {text}")
            record = extract(llm, text, args.max_tokens)
            print(f"record: {json.dumps(record)}")
            if record is not None:
                records.append(record)
    print(f"{len(records)} record(s) with keys {sorted(records[0]) if records else []}")
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
