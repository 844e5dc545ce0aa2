"""T5 prompt embeddings of the training captions, computed once and cached on disk (the authors precompute
captions; keeping T5-XXL, 9.5 GB, out of the training loop)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


class TextEmbeddings:
    """``get(prompt)`` -> (1, L, D) float32 embeddings from ``folder/<digest>.safetensors``; :meth:`ensure`
    computes the missing ones with the encoder from ``encoder_factory`` (loaded only if needed)."""

    def __init__(self, folder: str | os.PathLike, tokenizer, encoder_factory, length: int, device="cpu"):
        self.folder = Path(folder)
        self.tokenizer = tokenizer
        self.encoder_factory = encoder_factory
        self.length = length
        self.device = device
        self._memo: dict[str, torch.Tensor] = {}

    def path(self, prompt: str) -> Path:
        from videofrom3d.io.manifest import digest_json

        return self.folder / f"{digest_json([prompt, self.length])}.safetensors"

    def ensure(self, prompts) -> int:
        """Encode every prompt not on disk yet; returns how many were encoded."""
        from safetensors.torch import save_file

        from videofrom3d.inbetween.sampling import encode_text
        from videofrom3d.io.atomic import atomic_path

        missing = sorted({p for p in prompts if not self.path(p).is_file()})
        if not missing:
            return 0
        encoder = self.encoder_factory().to(self.device)
        for p in missing:
            emb = encode_text(self.tokenizer, encoder, p, self.length, self.device).float().cpu().contiguous()
            with atomic_path(self.path(p)) as tmp:
                save_file({"embeds": emb}, str(tmp))
        del encoder
        return len(missing)

    def get(self, prompt: str) -> torch.Tensor:
        from safetensors.torch import load_file

        if prompt not in self._memo:
            if len(self._memo) > 256:
                self._memo.clear()
            self._memo[prompt] = load_file(str(self.path(prompt)))["embeds"]
        return self._memo[prompt]
