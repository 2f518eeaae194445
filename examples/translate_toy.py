"""An encoder-decoder written with seqops, trained with torch autograd to reverse sequences.

The model is one encoder layer and one decoder layer (``seqops.transformer_encoder_layer``,
``seqops.transformer_decoder_layer``) over token embeddings plus sinusoidal positions; the
loss is ``seqops.cross_entropy``; translation is ``seqops.decode`` (greedy), the decoder run on
the tokens so far at each step. Some hundred Adam steps on random sequences of 6 tokens reach
exact reversals of unseen sequences.

Run: ``python examples/translate_toy.py [--steps 800]`` (a few seconds on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import seqops

VOCAB, BOS, LENGTH, D, HEADS, FF = 12, 0, 6, 32, 4, 64  # token 0 starts every target


def init(generator: torch.Generator) -> dict[str, torch.Tensor]:
    def w(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) / math.sqrt(shape[0])).requires_grad_()

    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(*shape).requires_grad_()

    def ones(*shape: int) -> torch.Tensor:
        return torch.ones(*shape).requires_grad_()

    names = ("enc", "dec_self", "dec_cross")
    params = {f"{n}_{p}": w(D, D) for n in names for p in ("q", "k", "v", "o")}
    params |= {"embed": w(VOCAB, D), "out": w(D, VOCAB)}
    for n in ("enc", "dec"):
        params |= {f"{n}_w1": w(D, FF), f"{n}_b1": zeros(FF), f"{n}_w2": w(FF, D), f"{n}_b2": zeros(D)}
        params |= {f"{n}_norm{i}_{k}": (ones if k == "w" else zeros)(D) for i in (1, 2, 3) for k in "wb"}
    return params


def attention(p: dict[str, torch.Tensor], name: str) -> seqops.MHAParams:
    return seqops.MHAParams(*(p[f"{name}_{x}"] for x in ("q", "k", "v", "o")))


def embed(p: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    positions = seqops.sinusoidal_positional_encoding(tokens.shape[-1], D, like=p["embed"])
    return p["embed"][tokens] * math.sqrt(D) + positions


def encode(p: dict[str, torch.Tensor], source: torch.Tensor) -> torch.Tensor:
    layer = seqops.EncoderLayerParams(
        attention(p, "enc"), p["enc_w1"], p["enc_b1"], p["enc_w2"], p["enc_b2"],
        p["enc_norm1_w"], p["enc_norm1_b"], p["enc_norm2_w"], p["enc_norm2_b"],
    )  # fmt: skip
    return seqops.transformer_encoder_layer(embed(p, source), layer, num_heads=HEADS)


def decode_logits(p: dict[str, torch.Tensor], target: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Next-token logits ``(B, T, VOCAB)`` for every prefix of ``target (B, T)`` (causal)."""
    norms = [p[f"dec_norm{i}_{k}"] for i in (1, 2, 3) for k in "wb"]
    ffn = (p["dec_w1"], p["dec_b1"], p["dec_w2"], p["dec_b2"])
    layer = seqops.DecoderLayerParams(attention(p, "dec_self"), attention(p, "dec_cross"), *ffn, *norms)
    h = seqops.transformer_decoder_layer(embed(p, target), memory, layer, num_heads=HEADS)
    return h @ p["out"]


def batch(generator: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    source = torch.randint(1, VOCAB, (size, LENGTH), generator=generator)
    return source, source.flip(-1)


def translate(p: dict[str, torch.Tensor], source: torch.Tensor) -> torch.Tensor:
    memory = encode(p, source)

    def step(tokens: torch.Tensor, so_far: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        so_far = torch.cat([so_far, tokens[:, None]], dim=1)
        return decode_logits(p, so_far, memory)[:, -1], so_far

    first = torch.full((source.shape[0],), BOS)
    empty = torch.zeros((source.shape[0], 0), dtype=torch.long)
    return seqops.decode(step, empty, first, max_new_tokens=LENGTH)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    p = init(generator)
    optimizer = torch.optim.Adam(p.values(), lr=3e-3)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        source, target = batch(generator, 64)
        decoder_in = torch.cat([torch.full((64, 1), BOS), target[:, :-1]], dim=1)  # teacher forcing
        logits = decode_logits(p, decoder_in, encode(p, source))
        loss = seqops.cross_entropy(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 1 or step % 100 == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    with torch.no_grad():
        source, target = batch(torch.Generator().manual_seed(123), 200)
        got = translate(p, source)
    exact = (got == target).all(dim=1).float().mean().item()
    tokens = (got == target).float().mean().item()
    print(f"unseen sequences reversed exactly: {exact:.1%} (tokens right: {tokens:.1%})")
    print(f"e.g. {source[0].tolist()} -> {got[0].tolist()}")
    print(f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
