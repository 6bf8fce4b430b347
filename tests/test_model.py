from __future__ import annotations

import pytest
import torch

from minigpt.bigram import BigramConfig, BigramLM
from minigpt.errors import MinigptError
from minigpt.model import GPT, PRESETS, GPTConfig, rms_norm


def tiny_config(**overrides: object) -> GPTConfig:
    values = dict(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=16)
    values.update(overrides)
    return GPTConfig(**values)


def test_changing_a_future_token_never_changes_earlier_logits() -> None:
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    ids = torch.randint(0, 17, (2, 16))
    for position in (0, 7, 15):
        changed = ids.clone()
        changed[:, position] = (changed[:, position] + 1) % 17
        before, after = model(ids), model(changed)
        torch.testing.assert_close(before[:, :position], after[:, :position])
        assert not torch.allclose(before[:, position:], after[:, position:])


def test_logits_shape_and_weight_tying() -> None:
    model = GPT(tiny_config())
    assert model(torch.zeros(3, 5, dtype=torch.long)).shape == (3, 5, 17)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_parameter_count_matches_the_gpt2_formula() -> None:
    config = PRESETS["gpt2"]
    d, layers, vocab, block = config.n_embd, config.n_layer, config.vocab_size, config.block_size
    per_block = 12 * d * d + 13 * d  # attention 4d^2 + 4d, MLP 8d^2 + 5d, two LayerNorms 4d
    expected = vocab * d + block * d + layers * per_block + 2 * d
    with torch.device("meta"):
        model = GPT(config)
    assert model.num_parameters(non_embedding=False) == expected == 124_439_808


def test_residual_projections_get_the_scaled_init() -> None:
    torch.manual_seed(0)
    model = GPT(tiny_config(n_layer=8, n_embd=64, n_head=4))
    proj_std = model.transformer.h[0].mlp.c_proj.weight.std().item()
    fc_std = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert proj_std == pytest.approx(0.02 / 4, rel=0.1)  # 0.02 / sqrt(2 * 8)
    assert fc_std == pytest.approx(0.02, rel=0.1)


def test_presets_apply_overrides() -> None:
    config = GPTConfig.from_preset("micro", vocab_size=65, dropout=0.1)
    assert (config.n_layer, config.n_head, config.n_embd, config.vocab_size, config.dropout) == (4, 4, 128, 65, 0.1)
    with pytest.raises(MinigptError, match="unknown model preset 'huge'"):
        GPTConfig.from_preset("huge")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd \\(30\\) must be divisible by model.gpt.n_head \\(4\\)"),
        ({"block_size": 0}, "block_size must be a positive integer"),
        ({"dropout": 1.5}, "dropout must be in"),
        ({"gelu": "relu"}, "model.gpt.gelu must be one of"),
    ],
)
def test_impossible_configs_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(MinigptError, match=message):
        tiny_config(**overrides)


def test_sequence_longer_than_block_size_is_refused() -> None:
    with pytest.raises(MinigptError, match="longer than the model's block_size 16"):
        GPT(tiny_config())(torch.zeros(1, 17, dtype=torch.long))


def test_config_round_trips_through_a_dict() -> None:
    config = tiny_config(dropout=0.1, bias=False)
    assert GPTConfig.from_dict(config.to_dict()) == config


def test_bigram_shares_the_interface() -> None:
    model = BigramLM(BigramConfig(vocab_size=5))
    ids = torch.tensor([[0, 1, 2], [4, 3, 2]])
    logits = model(ids)
    assert logits.shape == (2, 3, 5)
    # A bigram model's prediction depends on the current token alone.
    torch.testing.assert_close(logits[0, 2], logits[1, 2])
    assert model.num_parameters() == 25


def test_bf16_autocast_on_cpu_attends_in_fp32_and_matches_fp32_training() -> None:
    """bf16-mixed on a CPU: the projections run in bf16, attention in fp32 (torch's bf16 CPU
    attention backward is many times slower), and a few training steps follow fp32's losses."""
    torch.manual_seed(0)
    config = tiny_config(position="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False)
    ids = torch.randint(0, config.vocab_size or 0, (4, 17))
    seen: list[torch.dtype] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def recording(q: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(q.dtype)
        return original(q, *args, **kwargs)  # type: ignore[arg-type]

    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = GPT(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses[precision] = []
        for _ in range(5):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                torch.nn.functional.scaled_dot_product_attention = recording
                try:
                    logits = model(ids[:, :-1])
                finally:
                    torch.nn.functional.scaled_dot_product_attention = original
                if precision == "bf16":
                    assert model.lm_head(torch.zeros(1, config.n_embd)).dtype == torch.bfloat16
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[precision].append(loss.item())
    assert set(seen) == {torch.float32}
    assert losses["bf16"][-1] < losses["bf16"][0]
    assert losses["bf16"] == pytest.approx(losses["fp32"], abs=0.05)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_weight", [True, False])
def test_cpu_rms_norm_matches_torch_in_value_gradient_and_dtype(dtype: torch.dtype, with_weight: bool) -> None:
    """minigpt's CPU RMSNorm (a hand-written backward) gives torch's rms_norm output and gradients."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16, dtype=dtype, requires_grad=True)
    weight = torch.randn(16, requires_grad=True) if with_weight else None
    grad = torch.randn(3, 5, 16, dtype=dtype)
    inputs = [x] + ([weight] if weight is not None else [])
    ours = rms_norm(x, weight, 1e-6)
    theirs = torch.nn.functional.rms_norm(x, (16,), weight, 1e-6)
    assert ours.dtype == theirs.dtype == dtype
    torch.testing.assert_close(ours, theirs)
    expected = torch.autograd.grad(theirs, inputs, grad)
    for mine, reference in zip(torch.autograd.grad(ours, inputs, grad), expected, strict=True):
        assert mine.dtype == reference.dtype
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)


def test_cpu_rms_norm_gradients_are_exact_in_float64() -> None:
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, weight: rms_norm(x, weight, 1e-6), (x, weight))
