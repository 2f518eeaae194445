"""Train a tiny VAE for a few steps in PyTorch and in JAX, with seqops for the VAE maths.

The models are plain linear layers written in each framework; seqops supplies the
reparameterization (``seqops.reparameterize``) and the loss (``-seqops.elbo``, a Bernoulli
likelihood minus ``KL(q(z|x) || N(0, I))``). The same seqops calls run on both libraries.

Run: ``python examples/vae_step.py`` (prints the loss of both; it falls).
"""

from __future__ import annotations

import numpy as np

import seqops

D, H, Z = 16, 32, 2  # data, hidden and latent sizes
STEPS, BATCH, LR = 60, 128, 0.03


def synthetic_data(n: int = BATCH, seed: int = 0) -> np.ndarray:
    """Binary vectors: noisy copies of four prototypes (a structure a 2-D latent can hold)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((4, D)) > 0.5
    picked = prototypes[rng.integers(0, 4, size=n)]
    flips = rng.random((n, D)) < 0.05
    return (picked ^ flips).astype(np.float32)


def init_params(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def dense(n_in: int, n_out: int) -> np.ndarray:
        return (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)

    sizes = {"enc": H, "stats": 2 * Z, "dec": H, "out": D}
    zeros = {f"b_{name}": np.zeros(n, np.float32) for name, n in sizes.items()}
    return {
        "w_enc": dense(D, H),
        "w_stats": dense(H, 2 * Z),
        "w_dec": dense(Z, H),
        "w_out": dense(H, D),
        **zeros,
    }


def loss_fn(tanh, params, x, rng):
    """``-ELBO`` (mean over the batch), the same code for torch and JAX arrays."""
    hidden = tanh(x @ params["w_enc"] + params["b_enc"])
    stats = hidden @ params["w_stats"] + params["b_stats"]
    mu, log_var = stats[:, :Z], stats[:, Z:]
    z = seqops.reparameterize(mu, log_var, rng=rng)
    logits = tanh(z @ params["w_dec"] + params["b_dec"]) @ params["w_out"] + params["b_out"]
    return -seqops.elbo(x, logits, mu, log_var, likelihood="bernoulli", reduction="mean")


def train_torch() -> list[float]:
    import torch

    params = {k: torch.tensor(v, requires_grad=True) for k, v in init_params().items()}
    x = torch.tensor(synthetic_data())
    optimizer = torch.optim.Adam(params.values(), lr=LR)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(torch.tanh, params, x, generator)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def train_jax() -> list[float]:
    import jax
    import jax.numpy as jnp

    params = {k: jnp.asarray(v) for k, v in init_params().items()}
    x = jnp.asarray(synthetic_data())
    first = {k: jnp.zeros_like(p) for k, p in params.items()}
    second = dict(first)

    @jax.jit
    def step(params, first, second, key, t):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(jnp.tanh, p, x, key))(params)
        # Adam with torch.optim.Adam's defaults
        first = {k: 0.9 * first[k] + 0.1 * g for k, g in grads.items()}
        second = {k: 0.999 * second[k] + 0.001 * g * g for k, g in grads.items()}
        params = {
            k: p - LR * (first[k] / (1 - 0.9**t)) / (jnp.sqrt(second[k] / (1 - 0.999**t)) + 1e-8)
            for k, p in params.items()
        }
        return params, first, second, loss

    keys = jax.random.split(jax.random.key(0), STEPS)
    losses = []
    for t in range(STEPS):
        params, first, second, loss = step(params, first, second, keys[t], t + 1)
        losses.append(float(loss))
    return losses


def main() -> None:
    for library, train in (("torch", train_torch), ("jax", train_jax)):
        losses = train()
        for t in range(0, STEPS, 10):
            print(f"{library} step {t}: loss {losses[t]:.4f}")
        print(f"{library} step {STEPS - 1}: loss {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
