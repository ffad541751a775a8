"""An ordinary OpenAI-client program, pointed at ``edgeveda serve``.

Nothing here is specific to edgeveda-ffi: the official ``openai`` package
talks to the local server as it would to api.openai.com. Start the server
first (``pip install 'edgeveda-ffi[server]' openai``):

    edgeveda serve                      # http://127.0.0.1:8080/v1, local only
    python examples/openai_client.py

OPENAI_BASE_URL / OPENAI_API_KEY (or ``edgeveda serve --api-key KEY``) and
OPENAI_MODEL override the defaults below.
"""

from __future__ import annotations

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"),
    api_key=os.environ.get("OPENAI_API_KEY", "no-key-needed"),  # any value unless --api-key
)
# the server serves one model; ask it for the id instead of hard-coding one
model = os.environ.get("OPENAI_MODEL") or client.models.list().data[0].id

answer = client.chat.completions.create(
    model=model,
    messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    max_tokens=32,
    temperature=0,
)
print(answer.choices[0].message.content)

# streaming: the answer arrives piece by piece (Server-Sent Events)
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Name three colours."}],
    max_tokens=32,
    stream=True,
)
for chunk in stream:
    print(chunk.choices[0].delta.content or "", end="", flush=True)
print()

vector = client.embeddings.create(model=model, input="Paris is in France.").data[0].embedding
print(f"embedding: {len(vector)} dimensions")
