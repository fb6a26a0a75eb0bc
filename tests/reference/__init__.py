"""Numpy reference forward pass (the oracle for the C++ core); see forward.py."""
from .forward import RefHParams, hparams_of, reference_logits
from .weights import RefWeights, load_weights

__all__ = ["RefHParams", "RefWeights", "hparams_of", "load_weights", "reference_logits"]
