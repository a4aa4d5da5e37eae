"""awqguard: an AWQ quantizer and the regression gates that prove a 4-bit RAG pipeline still works."""

__version__ = "0.1.0"

from awqguard.quantizer.config import QuantConfig  # noqa: E402

__all__ = ["QuantConfig", "quantize", "load_quantized", "__version__"]


def __getattr__(name):
    # torch and transformers load only when the API is used, so `awqguard --help` stays fast
    if name == "quantize":
        from awqguard.quantizer.api import quantize
        return quantize
    if name == "load_quantized":
        from awqguard.quantizer.checkpoint import load_quantized
        return load_quantized
    raise AttributeError(name)
