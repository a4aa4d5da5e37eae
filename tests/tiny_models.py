"""Tiny random-weight models built from transformers configs, one per supported architecture."""

from __future__ import annotations

import torch
import transformers as tf

VOCAB = 128


IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _common(**kw):
    return dict(**IDS, vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=128, **kw)


CONFIGS = {
    "llama-gqa": lambda: tf.LlamaConfig(**_common(num_key_value_heads=2)),
    "llama-mha": lambda: tf.LlamaConfig(**_common(num_key_value_heads=4)),
    "mistral": lambda: tf.MistralConfig(**_common(num_key_value_heads=2)),
    "qwen2": lambda: tf.Qwen2Config(**_common(num_key_value_heads=2)),
    "qwen3": lambda: tf.Qwen3Config(**_common(num_key_value_heads=2, head_dim=16)),
    "gemma": lambda: tf.GemmaConfig(**_common(num_key_value_heads=4, head_dim=16)),
    "gemma2": lambda: tf.Gemma2Config(**_common(num_key_value_heads=2, head_dim=16)),
    "gemma3": lambda: tf.Gemma3TextConfig(**_common(num_key_value_heads=2, head_dim=16)),
    "phi3": lambda: tf.Phi3Config(**_common(num_key_value_heads=4)),
    "opt": lambda: tf.OPTConfig(**IDS, vocab_size=VOCAB, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                                num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=128),
    "gpt2": lambda: tf.GPT2Config(**IDS, vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=128),
    "gpt_neox": lambda: tf.GPTNeoXConfig(**IDS, vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128),
    "bert": lambda: tf.BertConfig(pad_token_id=0, vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, max_position_embeddings=128),
}


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """A model in eval mode whose norm weights are randomised too, so folding is really exercised."""
    torch.manual_seed(seed)
    config = CONFIGS[name]()
    config._attn_implementation = "eager" if name.startswith("gemma") else "sdpa"
    model_cls = tf.BertModel if name == "bert" else tf.AutoModelForCausalLM
    model = model_cls.from_config(config) if name != "bert" else model_cls(config)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname or "ln" in pname.split(".")[-2:][0]:
                p.add_(0.1 * torch.randn_like(p))
    return model.float().eval()


def first_block_inputs(name: str, seed: int, sequences: int = 4, length: int = 32):
    """(block 0, its architecture, its captured inputs, the call) of tiny model `name`, fed
    `sequences` x `length` random token ids drawn with `seed`: the start of a one-block search test."""
    from awqguard.quantizer.blocks import capture_block_inputs
    from awqguard.quantizer.mappings import find_blocks, resolve_architecture
    model = build(name)
    _, arch = resolve_architecture(model)
    _, blocks = find_blocks(model, arch)
    samples = torch.randint(3, VOCAB, (sequences, length), generator=torch.Generator().manual_seed(seed))
    hidden, call = capture_block_inputs(model, blocks[0], samples, chunk=sequences)
    return blocks[0], arch, hidden, call


def outputs(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def char_tokenizer():
    """A character-level fast tokenizer whose ids fit the tiny models' vocabulary."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 99, "\n": 98}
    vocab.update({chr(c): c - 32 + 3 for c in range(32, 127)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


def save_hf_folder(name: str, folder, seed: int = 0):
    """Write a tiny model and its tokenizer as a Hugging Face folder (safetensors)."""
    model = build(name, seed)
    model.save_pretrained(str(folder))
    char_tokenizer().save_pretrained(str(folder))
    return model


CALIB_TEXT = "\n\n".join(
    f"Paragraph {i}: the quick brown fox number {i} jumps over {i % 7} lazy dogs, then rests." for i in range(400))
