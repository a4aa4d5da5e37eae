"""transformers names that changed inside the range awqguard supports.

transformers 5.x renamed the key-value cache argument and output field from `past_key_values` to
`cache` and prints a deprecation warning for every use of the old name. awqguard asks the installed
version which name it has, so no warning caused by awqguard's own calls reaches a user's terminal.
"""

from __future__ import annotations

import functools
from typing import Any

OLD_CACHE_NAME = "past_key_values"


@functools.cache
def cache_name() -> str:
    """"cache" where the installed transformers has it, else "past_key_values"."""
    from transformers.modeling_outputs import CausalLMOutputWithPast
    fields = getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
    return "cache" if "cache" in fields else OLD_CACHE_NAME


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """The keyword that passes a key-value cache to a model's forward."""
    return {cache_name(): cache}


def output_cache(output: Any) -> Any:
    """The key-value cache a model's forward returned."""
    return getattr(output, cache_name())


# keyword names a decoder layer may receive for the cache; the quantizer replays blocks without one
LAYER_CACHE_KWARGS = ("cache", "past_key_values", "past_key_value", "layer_past", "use_cache")
