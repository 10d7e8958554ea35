"""The language decoder: a small MLP from a rendered feature to logits over the N codebook classes.

feature_dim → hidden → ReLU → n_classes; softmax (inside the cross-entropy) gives class probabilities.
Its weights are saved in the language field's checkpoint as `decoder.0.weight`, `decoder.0.bias`,
`decoder.2.weight`, `decoder.2.bias`.
"""

from __future__ import annotations

from typing import Any

DECODER_PREFIX = "decoder."


def build_decoder(feature_dim: int, hidden: int, n_classes: int) -> Any:
    """A fresh decoder (default torch initialisation; seed the global RNG before for determinism)."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(feature_dim, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, n_classes),
    )


def decoder_tensors(decoder: Any) -> dict[str, Any]:
    """The decoder's weights under checkpoint names (`decoder.<key>`)."""
    return {DECODER_PREFIX + k: v.detach() for k, v in decoder.state_dict().items()}


def decoder_from_tensors(tensors: dict[str, Any], *, path: Any) -> Any:
    """Rebuild the decoder from checkpoint tensors; sizes come from the weights, keys are checked strictly."""
    from ccl.io.checkpoint import check_state_dict_keys

    state = {k[len(DECODER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(DECODER_PREFIX)}
    expected = ["0.weight", "0.bias", "2.weight", "2.bias"]
    check_state_dict_keys(path, [DECODER_PREFIX + k for k in state], [DECODER_PREFIX + k for k in expected])
    hidden, feature_dim = state["0.weight"].shape
    n_classes = state["2.weight"].shape[0]
    decoder = build_decoder(int(feature_dim), int(hidden), int(n_classes))
    decoder.load_state_dict(state, strict=True)
    return decoder
