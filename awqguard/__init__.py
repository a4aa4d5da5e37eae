"""awqguard: an AWQ quantizer and the regression gates that prove a 4-bit RAG pipeline still works."""

from awqguard.quantizer.config import QuantConfig
from awqguard.version import __version__

__all__ = ["QuantConfig", "quantize", "load_quantized", "run_gates", "render_report", "__version__"]


def __getattr__(name):
    # torch and transformers load only when the API is used, so `awqguard --help` stays fast
    if name == "quantize":
        from awqguard.quantizer.api import quantize
        return quantize
    if name == "load_quantized":
        from awqguard.quantizer.checkpoint import load_quantized
        return load_quantized
    if name == "run_gates":
        from awqguard.gates.engine import run_gates
        return run_gates
    if name == "render_report":
        from awqguard.report.html import render_report
        return render_report
    raise AttributeError(name)
