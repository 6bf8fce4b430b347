"""Muon for a GPT's hidden matrices and AdamW for everything else, as one torch optimizer.

Muon (Keller Jordan, 2024) replaces each matrix's momentum update by the nearest semi-orthogonal
matrix, so every direction of the update moves by the same amount instead of a few dominant
ones. The orthogonalisation is a Newton-Schulz iteration: only matrix products, no SVD.

torch 2.13 ships `torch.optim.Muon`, but it runs Newton-Schulz in bfloat16, which is many times
slower than float32 on CPUs (benchmarks/README.md, "Modern recipe search"). Here it runs in
float32, and same-shaped matrices (after turning tall ones on their side) go through it as one
batched product. The update is scaled to AdamW's typical RMS (Moonshot's 0.2 * sqrt(max(m, n))),
so learning rates tuned for AdamW are a sensible starting point for Muon too.

One optimizer holding both kinds of parameter groups keeps Lightning, LR schedulers and
checkpoints simple: a LambdaLR scales every group's `lr`, whichever algorithm it uses.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, overload

import torch
from torch import nn

from minigpt.errors import MinigptError

# Quintic Newton-Schulz coefficients chosen (by Keller Jordan) to push every singular value into
# roughly [0.7, 1.2] in 5 steps: not exactly 1, which is all the update needs.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
ALGORITHMS = ("muon", "adamw")


def orthogonalize(updates: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Approximately U V^T for each matrix of a (k, m, n) stack with m <= n, computed in `dtype`."""
    x = updates.to(dtype)
    # Dividing by the Frobenius norm puts every singular value in [0, 1], where the iteration converges.
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    a, b, c = NEWTON_SCHULZ
    for _ in range(steps):
        gram = x @ x.mT  # (k, m, m): the small side, since m <= n
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b * G + c * G @ G
        x = torch.baddbmm(x, poly, x, beta=a)  # a * X + (b * G + c * G @ G) @ X
    return x


def _wide(matrix: torch.Tensor) -> torch.Tensor:
    """The matrix with no more rows than columns (transposed if tall): Newton-Schulz's cheap side."""
    return matrix if matrix.size(0) <= matrix.size(1) else matrix.mT


class MuonAdamW(torch.optim.Optimizer):
    """Muon for groups with `algorithm: "muon"` (2-D weights only), AdamW for `"adamw"` groups.

    Every group has its own `lr` and `weight_decay` (decoupled, as in AdamW: p *= 1 - lr * wd).
    Muon groups also take `momentum` (Nesterov), `ns_steps` and `ns_dtype` (the precision of the
    Newton-Schulz products: float32 is safe everywhere; bfloat16 halves their time on CPUs with
    AMX and on GPUs, and is slower on CPUs without bfloat16 units). AdamW groups take `betas`, `eps`.
    """

    def __init__(
        self,
        groups: Iterable[dict[str, Any]],
        momentum: float = 0.95,
        ns_steps: int = 5,
        ns_dtype: torch.dtype = torch.float32,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
    ) -> None:
        defaults = dict(
            lr=1e-3,
            weight_decay=0.0,
            algorithm="adamw",
            momentum=momentum,
            ns_steps=ns_steps,
            ns_dtype=ns_dtype,
            betas=betas,
            eps=eps,
        )
        super().__init__(list(groups), defaults)
        for group in self.param_groups:
            if group["algorithm"] not in ALGORITHMS:
                raise MinigptError(f"optimizer group algorithm must be one of {', '.join(ALGORITHMS)}")
            if group["algorithm"] == "muon" and any(p.dim() != 2 for p in group["params"]):
                raise MinigptError("Muon orthogonalises matrices: give it 2-D parameters only")

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon if group["algorithm"] == "muon" else self._adamw)(group, params)
        return loss

    def _muon(self, group: dict[str, Any], params: list[nn.Parameter]) -> None:
        beta = group["momentum"]
        updates = []
        for p in params:
            grad = p.grad
            assert grad is not None  # step passes only parameters with gradients
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buffer = state["momentum_buffer"]
            buffer.lerp_(grad, 1 - beta)
            # Nesterov: step along the gradient mixed with the momentum it is about to join.
            updates.append(grad.lerp(buffer, beta))
        # Same-shaped matrices (tall ones transposed to wide) share one batched iteration.
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, update in enumerate(updates):
            by_shape[tuple(sorted(update.shape))].append(index)
        for indices in by_shape.values():
            stack = torch.stack([_wide(updates[i]) for i in indices])
            for i, ortho in zip(indices, orthogonalize(stack, group["ns_steps"], group["ns_dtype"]), strict=True):
                updates[i] = ortho if updates[i].size(0) <= updates[i].size(1) else ortho.mT
        lr, decay = group["lr"], group["weight_decay"]
        for p, update in zip(params, updates, strict=True):
            # An orthogonal (m, n) matrix has RMS 1/sqrt(max(m, n)); this gives it AdamW's ~0.2.
            scale = 0.2 * math.sqrt(max(p.shape))
            p.mul_(1 - lr * decay).add_(update.to(p.dtype), alpha=-lr * scale)

    def _adamw(self, group: dict[str, Any], params: list[nn.Parameter]) -> None:
        beta1, beta2 = group["betas"]
        lr, decay, eps = group["lr"], group["weight_decay"], group["eps"]
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            step = state["step"]
            state["exp_avg"].lerp_(p.grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            # Bias corrections: both averages start at zero and would understate early steps.
            denominator = (state["exp_avg_sq"] / (1 - beta2**step)).sqrt_().add_(eps)
            p.mul_(1 - lr * decay).addcdiv_(state["exp_avg"], denominator, value=-lr / (1 - beta1**step))


def muon_adamw(
    roles: dict[str, list[nn.Parameter]],
    matrices_lr: float,
    embeddings_lr: float,
    gains_lr: float | None = None,
    weight_decay: float = 0.0,
    **options: Any,
) -> MuonAdamW:
    """The optimizer for a model's `parameter_roles()`: Muon for `matrices`, AdamW for
    `embeddings` (decayed) and `gains` (not decayed, at `gains_lr`, by default `embeddings_lr`).

    `options` go to MuonAdamW (momentum, ns_steps, ns_dtype, betas, eps). Empty groups are left out.
    """
    groups = [
        dict(params=roles["matrices"], algorithm="muon", lr=matrices_lr, weight_decay=weight_decay),
        dict(params=roles["embeddings"], algorithm="adamw", lr=embeddings_lr, weight_decay=weight_decay),
        dict(params=roles["gains"], algorithm="adamw", lr=embeddings_lr if gains_lr is None else gains_lr),
    ]
    return MuonAdamW([group for group in groups if group["params"]], **options)
