"""BLIP-2 captions for the inbetweening prompt, from a local folder (a tiny random BLIP-2 built here)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import one_torch_thread  # noqa: E402, F401
from videofrom3d.inbetween import InbetweenConfig, InbetweenError  # noqa: E402

pytestmark = pytest.mark.torch


def _tiny_blip2(folder):
    """A 1-layer BLIP-2 (ViT, Q-Former, OPT) with a byte-level vocabulary, saved like Salesforce/blip2-opt-2.7b."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessorPil,
        GPT2Tokenizer,
    )

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "<image>": 3}
    for b in range(256):
        vocab.setdefault(chr(b) if 33 <= b <= 126 else chr(256 + b), len(vocab))
    tok = GPT2Tokenizer(
        vocab=vocab, merges=[], unk_token="<unk>", bos_token="</s>", eos_token="</s>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    processor = Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tok, num_query_tokens=4)
    config = Blip2Config(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            encoder_hidden_size=16, vocab_size=len(tok)),
        text_config=dict(model_type="opt", hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                         vocab_size=len(tok), word_embed_proj_dim=16, max_position_embeddings=64, bos_token_id=1,
                         eos_token_id=1, pad_token_id=0),
        num_query_tokens=4,
        image_token_index=3,
    )
    torch.manual_seed(0)
    Blip2ForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_blip2_caption_from_local_folder(tmp_path):
    from videofrom3d.inbetween.components import tiny_cogvideox_components
    from videofrom3d.inbetween.inbetweener import Inbetweener, blip2_captioner
    from videofrom3d.models import find

    folder = _tiny_blip2(tmp_path / "blip2-opt-2.7b")
    assert find("blip2", folder) == folder
    calls = []
    caption = blip2_captioner(folder, torch.device("cpu"), max_new_tokens=4)

    def counted(image):
        calls.append(1)
        return caption(image)

    image = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    inb = Inbetweener(tiny_cogvideox_components(height=32, width=32), InbetweenConfig(), device="cpu", captioner=counted)
    text = inb.resolve_prompt(image)
    assert isinstance(text, str) and text == inb.caption(image) and len(calls) == 1  # cached per image
    assert text == caption(image)  # deterministic (greedy decoding)
    with pytest.raises(InbetweenError, match="no prompt"):
        Inbetweener(inb.components, InbetweenConfig(), device="cpu").resolve_prompt(None)
    given = Inbetweener(inb.components, InbetweenConfig(prompt="a castle"), device="cpu", captioner=counted)
    assert given.resolve_prompt(image) == "a castle" and len(calls) == 1
