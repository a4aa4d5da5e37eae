"""A GGUF file as a float safetensors folder, converted one tensor at a time.

transformers reads a GGUF by dequantizing every tensor into one dict and building the model from
it: the whole model in float32 in memory at once (280 GB for a 70B model). Here each tensor is
dequantized from the memory-mapped file, put through the same per-architecture fix-ups and name
mapping transformers applies (Llama's q/k permutation, Gemma's norm weight minus one), and written
straight to the shard writer. Memory holds one tensor; the folder's weights are bit for bit the
float32 weights transformers' own loader produces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from awqguard import progress
from awqguard.shards import ShardWriter

CONVERTED_SHARD_BYTES = 5 * 10**9        # the converted folder's shards, as transformers writes them


def convert_gguf(gguf_path: Path, folder: Path, max_shard_bytes: int = CONVERTED_SHARD_BYTES) -> None:
    """Write config.json, generation_config.json, the tokenizer and float32 safetensors shards of the
    GGUF file `gguf_path` into the (empty, existing) `folder`."""
    from gguf import GGUFReader, dequantize
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    gguf_path = Path(gguf_path)
    config = AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config              # the weights written are plain floats
    reader = GGUFReader(str(gguf_path))
    processor, parsed, names = _name_mapping(gguf_path, reader, config)
    writer = ShardWriter(folder, max_shard_bytes)
    with progress.task(f"converting {gguf_path.name}", total=len(reader.tensors)) as bar:
        for tensor in reader.tensors:
            result = processor.process(weights=dequantize(tensor.data, tensor.tensor_type), name=tensor.name,
                                       tensor_key_mapping=names, parsed_parameters=parsed)
            if result.name in names:
                writer.add({names[result.name]: _float32(result.weights)})
            bar.advance()
    writer.add({name: _float32(t) for name, t in parsed["tensors"].items()})   # gathered ones (MoE experts)
    writer.close()
    config.save_pretrained(str(folder))
    GenerationConfig.from_model_config(config).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).save_pretrained(str(folder))


def _name_mapping(gguf_path: Path, reader, config):
    """(transformers' tensor processor for the file's architecture, its parsed metadata, GGUF tensor
    name -> state-dict name), from a model built on the meta device."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (TENSOR_PROCESSORS, TensorProcessor,
                                                          get_gguf_hf_weights_map, load_gguf_checkpoint,
                                                          read_field)
    parsed = load_gguf_checkpoint(str(gguf_path), return_tensors=False)
    parsed["tensors"] = {}
    architecture = read_field(reader, "general.architecture")[0]
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=parsed.get("config", {}))
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    return processor, parsed, get_gguf_hf_weights_map(model, processor)


def _float32(weights) -> torch.Tensor:
    if isinstance(weights, torch.Tensor):
        return weights.float()
    return torch.from_numpy(np.array(weights, dtype=np.float32, copy=True))
