"""What the gate engine needs from a model, and the implementations of it (docs/architecture.md §7a).

The engine and the metrics see only a `Backend`: generation, teacher-forced scoring, a description
and the weights' size. `LocalBackend` wraps a transformers model in this process.
"""

from awqguard.backends.base import Backend, BackendInfo, Decoding, Generation, Scores
from awqguard.backends.local import LocalBackend

__all__ = ["Backend", "BackendInfo", "Decoding", "Generation", "LocalBackend", "Scores"]
