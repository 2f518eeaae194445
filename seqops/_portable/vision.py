"""Portable factories of the vision family (ViT patching, Swin windows)."""

from __future__ import annotations

from seqops._agnostic import vision
from seqops._portable._registry import on_namespace

on_namespace("patchify", vision.patchify)
on_namespace("unpatchify", vision.unpatchify)
on_namespace("vit_embed", vision.vit_embed)
on_namespace("window_partition", vision.window_partition)
on_namespace("window_reverse", vision.window_reverse)
on_namespace("cyclic_shift", vision.cyclic_shift)
on_namespace("shifted_window_mask", vision.shifted_window_mask)
on_namespace("relative_position_index", vision.relative_position_index)
on_namespace("window_attention", vision.window_attention)
