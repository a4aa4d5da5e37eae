"""Where `awqguard check` puts the models it runs in this process: the CPU, one GPU, or spread over
every visible GPU with accelerate's `device_map="auto"` (a 70B reference fits on no single GPU).

On CUDA a model runs in float16 (`models.reference_dtype`), packed linears on the CUDA kernel path.
The CUDA branches have not run on this project's machines; without CUDA every model stays on the CPU.
"""

from __future__ import annotations

import torch
from torch import nn

def plan(setting: str, gpus: int) -> str:
    """"cpu", "cuda" (one GPU) or "spread" (several) for a `device` setting and the visible GPU count."""
    if setting == "cpu" or gpus == 0:
        return "cpu"
    return "cuda" if gpus == 1 else "spread"


def place(model: nn.Module, setting: str) -> nn.Module:
    """`model` on the devices `setting` asks for (see `plan`), with its packed linears' kernel path
    chosen for where they landed."""
    where = plan(setting, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if where == "cpu":
        return model
    from awqguard.kernels.paths import default_path
    from awqguard.kernels.wqlinear import set_kernel_path
    from awqguard.models import reference_dtype
    model = model.to(reference_dtype("cuda"))
    if where == "cuda":
        model = model.to("cuda")
    else:
        model = _spread(model)
    set_kernel_path(model, default_path("cuda"))
    return model.eval()


def _spread(model: nn.Module) -> nn.Module:
    """Blocks split over the GPUs in proportion to their free memory; inputs and outputs on the first."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    memory = get_balanced_memory(model, no_split_module_classes=no_split, dtype=next(model.parameters()).dtype)
    device_map = infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split)
    return dispatch_model(model, device_map=device_map)


def devices_of(model: nn.Module) -> set[str]:
    """The devices a model's parameters sit on."""
    return {str(p.device) for p in model.parameters()}
