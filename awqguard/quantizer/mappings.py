"""Which ops AWQ scales, per architecture, declared as data (docs/architecture.md §4).

A Mapping says: the output of `prev` feeds exactly the `linears`; dividing `prev`'s output by s
and multiplying the linears' input columns by s leaves the function unchanged; `inspect` is the
module whose output the scale search checks. Paths are relative to one decoder block.
Architectures are keyed by `config.model_type`, which covers *ForCausalLM, *Model and friends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from awqguard.errors import ConfigError


@dataclass(frozen=True)
class Mapping:
    prev: str
    linears: tuple[str, ...]
    inspect: str
    # prev is a linear whose output rows must match the linears' inputs (fails under GQA): skip if not
    needs_same_shape: bool = False


@dataclass(frozen=True)
class Architecture:
    blocks: str                               # path of the ModuleList of blocks, e.g. "model.layers"
    mappings: tuple[Mapping, ...]
    no_clip: tuple[str, ...] = ("q_proj", "k_proj")   # name fragments: q·k products hide clip error
    norm_offset: float = 0.0                  # 1.0 for Gemma's RMSNorm, which multiplies by (1 + w)
    conv1d_to_linear: bool = False            # GPT-2 stores its linears as transposed Conv1D


def _qkv(prefix: str = "self_attn", names=("q_proj", "k_proj", "v_proj")) -> tuple[str, ...]:
    return tuple(f"{prefix}.{n}" for n in names)


_LLAMA_BLOCK = (
    Mapping("input_layernorm", _qkv(), "self_attn"),
    Mapping("self_attn.v_proj", ("self_attn.o_proj",), "self_attn.o_proj", needs_same_shape=True),
    Mapping("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp"),
    Mapping("mlp.up_proj", ("mlp.down_proj",), "mlp.down_proj"),
)
# Gemma 2/3 normalise the attention output with post_attention_layernorm; the MLP is fed by
# pre_feedforward_layernorm instead.
_GEMMA2_BLOCK = (
    _LLAMA_BLOCK[0], _LLAMA_BLOCK[1],
    Mapping("pre_feedforward_layernorm", ("mlp.gate_proj", "mlp.up_proj"), "mlp"),
    _LLAMA_BLOCK[3],
)

LLAMA = Architecture("model.layers", _LLAMA_BLOCK)
GEMMA = Architecture("model.layers", _LLAMA_BLOCK, norm_offset=1.0)
GEMMA2 = Architecture("model.layers", _GEMMA2_BLOCK, norm_offset=1.0)
PHI3 = Architecture("model.layers", (
    Mapping("input_layernorm", ("self_attn.qkv_proj",), "self_attn"),
    # qkv_proj -> o_proj is not declared: only the v rows of the fused output feed o_proj.
    Mapping("post_attention_layernorm", ("mlp.gate_up_proj",), "mlp"),
    # the "up" half is the last rows of gate_up_proj; scaling folds into those rows only.
    Mapping("mlp.gate_up_proj", ("mlp.down_proj",), "mlp.down_proj"),
), no_clip=("qkv_proj",))
OPT = Architecture("model.decoder.layers", (
    Mapping("self_attn_layer_norm", _qkv(), "self_attn"),
    Mapping("self_attn.v_proj", ("self_attn.out_proj",), "self_attn.out_proj", needs_same_shape=True),
    Mapping("final_layer_norm", ("fc1",), "fc1"),
    Mapping("fc1", ("fc2",), "fc2"),   # ReLU is positively homogeneous, so the scale passes through it
))
GPT2 = Architecture("transformer.h", (
    Mapping("ln_1", ("attn.c_attn",), "attn"),
    Mapping("ln_2", ("mlp.c_fc",), "mlp"),
    # c_fc -> c_proj is not declared: GELU does not commute with scaling.
), no_clip=("c_attn",), conv1d_to_linear=True)
GPT_NEOX = Architecture("gpt_neox.layers", (
    Mapping("input_layernorm", ("attention.query_key_value",), "attention"),
    Mapping("post_attention_layernorm", ("mlp.dense_h_to_4h",), "mlp"),
    # dense_h_to_4h -> dense_4h_to_h is not declared: GELU does not commute with scaling.
), no_clip=("query_key_value",))
# BERT is post-norm: each LayerNorm output is also the residual, so no norm can absorb a scale.
# Only value -> output.dense folds; the other linears are rounded (with clip search) unscaled.
BERT = Architecture("encoder.layer", (
    Mapping("attention.self.value", ("attention.output.dense",), "attention.output.dense",
            needs_same_shape=True),
), no_clip=("attention.self.query", "attention.self.key"))

ARCHITECTURES: dict[str, Architecture] = {
    "llama": LLAMA, "mistral": LLAMA, "qwen2": LLAMA, "qwen3": LLAMA,
    "gemma": GEMMA, "gemma2": GEMMA2, "gemma3_text": GEMMA2,
    "phi3": PHI3, "opt": OPT, "gpt2": GPT2, "gpt_neox": GPT_NEOX,
    "bert": BERT, "roberta": Architecture("encoder.layer", BERT.mappings, BERT.no_clip),
}


# ---- resolution: patterns -> modules (pure functions over nn.Module trees) ----------------------

@dataclass
class ResolvedMapping:
    mapping: Mapping
    prev: nn.Module
    linears: list[nn.Linear]
    inspect: nn.Module
    linear_names: list[str] = field(default_factory=list)   # relative to `inspect`, for functional calls


def find_blocks(model: nn.Module, arch: Architecture) -> tuple[str, nn.ModuleList]:
    """The ModuleList of decoder blocks: `arch.blocks` itself or any path ending in it."""
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or not name:
            continue
        # "model.layers" in a CausalLM, "layers" in the bare base model, or nested deeper
        if name == arch.blocks or name.endswith("." + arch.blocks) or arch.blocks.endswith("." + name):
            return name, module
    raise ConfigError(f"model has no block list at {arch.blocks!r}; is this the architecture it claims?")


def _get(block: nn.Module, path: str, block_name: str) -> nn.Module:
    try:
        return block.get_submodule(path)
    except AttributeError:
        raise ConfigError(f"{block_name}: mapping names {path!r}, which this block does not have") from None


def resolve_block(block: nn.Module, arch: Architecture, block_name: str) -> list[ResolvedMapping]:
    """Resolve the architecture's mappings inside one block, skipping shape-incompatible ones."""
    resolved = []
    for m in arch.mappings:
        prev = _get(block, m.prev, block_name)
        linears = [_get(block, p, block_name) for p in m.linears]
        inspect = _get(block, m.inspect, block_name)
        for p, lin in zip(m.linears, linears):
            if not isinstance(lin, nn.Linear):
                raise ConfigError(f"{block_name}.{p} is a {type(lin).__name__}, not a Linear")
        if m.needs_same_shape and (not isinstance(prev, nn.Linear)
                                   or prev.out_features != linears[0].in_features):
            continue   # e.g. grouped-query attention: v_proj's output is narrower than o_proj's input
        names = [_relative(inspect, lin) for lin in linears]
        resolved.append(ResolvedMapping(m, prev, linears, inspect, names))
    return resolved


def _relative(parent: nn.Module, child: nn.Module) -> str:
    if parent is child:
        return ""
    for name, module in parent.named_modules():
        if module is child:
            return name
    raise ConfigError(f"{type(child).__name__} is not inside the inspected {type(parent).__name__}")


def resolve_architecture(model: nn.Module) -> tuple[str, Architecture]:
    """(model_type, Architecture) from the registry, or one derived by tracing a block."""
    model_type = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
    if model_type in ARCHITECTURES:
        return model_type, ARCHITECTURES[model_type]
    arch = derive_architecture(model)
    if arch is None:
        raise ConfigError(
            f"unknown architecture {model_type!r}: no AWQ mapping is declared and none could be derived "
            f"from its blocks (no normalisation layer feeding linears). Supported: {sorted(ARCHITECTURES)}")
    return model_type, arch


def derive_architecture(model: nn.Module) -> Architecture | None:
    """Fallback: trace one block and map each norm to the linears that consume its output tensor.

    Only norm -> linears groups are derived; the fold check in the quantizer rejects a derived
    mapping that does not preserve the block's function (e.g. a post-norm residual).
    """
    candidates = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0
                  and any(isinstance(x, nn.Linear) for x in m[0].modules())]
    if not candidates:
        return None
    blocks_name, blocks = max(candidates, key=lambda nm: len(nm[1]))
    block = blocks[0]
    outputs: dict[int, str] = {}    # id(output tensor) -> norm path
    consumers: dict[int, list[str]] = {}
    alive: list[torch.Tensor] = []  # holding every traced tensor keeps its id from being reused
    hooks = []

    def norm_hook(name):
        def hook(module, inputs, output):
            alive.append(output)
            outputs[id(output)] = name
        return hook

    def linear_hook(name):
        def hook(module, inputs, output):
            alive.append(inputs[0])
            consumers.setdefault(id(inputs[0]), []).append(name)
        return hook

    for name, mod in block.named_modules():
        if "norm" in type(mod).__name__.lower():
            hooks.append(mod.register_forward_hook(norm_hook(name)))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook(name)))
    try:
        _trace_one_forward(model)
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    mappings = []
    for tensor_id, linears in consumers.items():
        if tensor_id in outputs:
            mappings.append(Mapping(outputs[tensor_id], tuple(linears), _common_prefix(linears)))
    if not mappings:
        return None
    return Architecture(blocks_name, tuple(mappings))


def _common_prefix(paths: list[str]) -> str:
    parts = [p.split(".")[:-1] for p in paths]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if len(paths) == 1:
        return paths[0]
    return ".".join(common)


def _trace_one_forward(model: nn.Module) -> None:
    ids = torch.zeros(1, 8, dtype=torch.long)
    with torch.no_grad():
        model(input_ids=ids)
