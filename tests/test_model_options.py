"""GPTConfig's optional architecture (RoPE, RMSNorm, QK-norm, ReLU²/SwiGLU, untied head, zero-init,
logit soft-cap) and the Muon + AdamW optimizer: every option keeps the model's contracts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minigpt.errors import MinigptError
from minigpt.model import GPT, GPTConfig, rotary_angles, rotate
from minigpt.muon import MuonAdamW, muon_adamw, orthogonalize

OPTIONS: dict[str, dict[str, object]] = {
    "default": {},
    "rope": {"position": "rope"},
    "rope-base-500": {"position": "rope", "rope_base": 500.0},
    "rmsnorm": {"norm": "rmsnorm"},
    "qk_norm": {"qk_norm": True},
    "relu2": {"mlp": "relu2"},
    "swiglu": {"mlp": "swiglu"},
    "mlp_ratio": {"mlp_ratio": 2.5},
    "untied": {"tie_embeddings": False},
    "zero_init": {"zero_init_proj": True, "tie_embeddings": False},
    "softcap": {"logit_softcap": 15.0},
    "value_embeddings": {"value_embeddings": True, "position": "rope"},
    "bias-rmsnorm": {"bias": True, "norm": "rmsnorm"},
    "modern": {
        "position": "rope",
        "norm": "rmsnorm",
        "qk_norm": True,
        "mlp": "relu2",
        "tie_embeddings": False,
        "zero_init_proj": True,
        "logit_softcap": 15.0,
        "bias": False,
    },
}
GPT2_NAMES = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight", "transformer.ln_f.bias"}
GPT2_BLOCK_NAMES = {
    f"{module}.{kind}"
    for module in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
    for kind in ("weight", "bias")
}


def tiny(**overrides: object) -> GPTConfig:
    values: dict[str, object] = dict(vocab_size=19, block_size=12, n_layer=2, n_head=2, n_embd=16)
    values.update(overrides)
    return GPTConfig(**values)


def trained_a_little(config: GPTConfig) -> GPT:
    """A model whose zero-initialised weights have moved, so every path carries signal."""
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


@pytest.mark.parametrize("name", OPTIONS)
def test_a_later_token_never_changes_earlier_logits(name: str) -> None:
    model = trained_a_little(tiny(**OPTIONS[name]))
    ids = torch.randint(0, 19, (2, 12), generator=torch.Generator().manual_seed(1))
    for position in (0, 5, 11):
        changed = ids.clone()
        changed[:, position] = (changed[:, position] + 1) % 19
        before, after = model(ids), model(changed)
        torch.testing.assert_close(before[:, :position], after[:, :position])
        assert not torch.allclose(before[:, position:], after[:, position:])


@pytest.mark.parametrize("name", OPTIONS)
def test_the_kv_cache_gives_the_logits_of_a_full_forward(name: str) -> None:
    model = trained_a_little(tiny(**OPTIONS[name]))
    ids = torch.randint(0, 19, (3, 12), generator=torch.Generator().manual_seed(2))
    full = model(ids)
    # A prefix, then several tokens at once (they must get positions 4 .. 8), then one at a time.
    cache = model.new_cache(batch_size=3)
    pieces = [model(ids[:, :4], cache), model(ids[:, 4:9], cache)]
    pieces += [model(ids[:, t : t + 1], cache) for t in range(9, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 12


@pytest.mark.parametrize("name", ["rope", "modern"])
def test_greedy_generation_is_the_same_with_and_without_the_cache(name: str) -> None:
    model = trained_a_little(tiny(**OPTIONS[name]))
    prompt = torch.tensor([[3, 1, 4]])
    uncached = prompt
    for _ in range(9):
        uncached = torch.cat((uncached, model(uncached)[:, -1:].argmax(-1)), dim=1)
    cache = model.new_cache(batch_size=1)
    cached, logits = prompt, model(prompt, cache)
    for _ in range(9):
        token = logits[:, -1:].argmax(-1)
        cached = torch.cat((cached, token), dim=1)
        logits = model(token, cache)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("name", OPTIONS)
def test_a_state_dict_round_trip_gives_identical_logits(name: str) -> None:
    config = tiny(**OPTIONS[name])
    model = trained_a_little(config)
    torch.manual_seed(99)  # a different draw: only the loaded weights may decide the logits
    restored = GPT(GPTConfig.from_dict(config.to_dict()))
    restored.load_state_dict(model.state_dict())
    ids = torch.randint(0, 19, (2, 12))
    assert torch.equal(restored.eval()(ids), model(ids))


@pytest.mark.parametrize("name", OPTIONS)
def test_every_trainable_parameter_has_exactly_one_role(name: str) -> None:
    model = GPT(tiny(**OPTIONS[name]))
    roles = model.parameter_roles()
    grouped = [id(p) for params in roles.values() for p in params]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith("transformer.h.") and p.dim() == 2 for p in roles["matrices"])
    assert all(p.dim() < 2 for p in roles["gains"])
    expected_embeddings = {"transformer.wte.weight"}
    if "transformer.wpe.weight" in dict(model.named_parameters()):
        expected_embeddings.add("transformer.wpe.weight")
    if not model.config.tie_embeddings:
        expected_embeddings.add("lm_head.weight")
    if model.config.value_embeddings:
        expected_embeddings |= {f"transformer.ve.{layer}.weight" for layer in range(model.config.n_layer)}
    assert {names[id(p)] for p in roles["embeddings"]} == expected_embeddings


@pytest.mark.parametrize("name", OPTIONS)
def test_parameter_count_and_flops_follow_the_options(name: str) -> None:
    config = tiny(**OPTIONS[name])
    model = GPT(config)
    everything = sum(p.numel() for p in model.parameters())
    assert model.num_parameters(non_embedding=False) == everything
    lookups = config.vocab_size * config.n_embd * (not config.tie_embeddings)
    lookups += config.block_size * config.n_embd * (config.position == "learned")
    lookups += config.n_layer * config.vocab_size * config.n_embd * config.value_embeddings
    assert model.num_parameters() == everything - lookups
    assert model.flops_per_token() == 6 * (everything - lookups) + 12 * 2 * 16 * 12


def test_the_default_model_is_gpt2s_layout() -> None:
    model = GPT(tiny())
    names = {name for name, _ in model.named_parameters()}
    block_names = {f"transformer.h.{i}.{rest}" for i in range(2) for rest in GPT2_BLOCK_NAMES}
    assert names == GPT2_NAMES | block_names  # lm_head.weight is wte's, listed once
    assert model.lm_head.weight is model.transformer.wte.weight
    assert isinstance(model.transformer.ln_f, torch.nn.LayerNorm)
    assert model.transformer.h[0].mlp.c_fc.out_features == 4 * 16
    assert isinstance(model.transformer.h[0].mlp.gelu, torch.nn.GELU)
    assert not model.transformer.h[0].attn.qk_norm
    assert model.transformer.h[0].attn.c_proj.weight.abs().sum() > 0
    assert model.config.logit_softcap == 0.0


def test_rope_has_no_position_table_and_untied_heads_are_their_own_matrix() -> None:
    model = GPT(tiny(position="rope", tie_embeddings=False, norm="rmsnorm"))
    assert "wpe" not in model.transformer
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert isinstance(model.transformer.h[1].ln_2, torch.nn.RMSNorm)


def test_rotary_scores_depend_on_the_distance_between_positions_only() -> None:
    config = tiny(position="rope")
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 8)  # one query and one key of head size 8
    cos, sin = rotary_angles(config, torch.arange(12))

    def score(query_at: int, key_at: int) -> torch.Tensor:
        return (rotate(q, cos[query_at], sin[query_at]) * rotate(k, cos[key_at], sin[key_at])).sum()

    torch.testing.assert_close(score(7, 3), score(11, 7))
    torch.testing.assert_close(score(2, 2), (q * k).sum())
    assert not torch.allclose(score(7, 3), score(7, 4))
    torch.testing.assert_close(rotate(q, cos[5], sin[5]).norm(), q.norm())


def test_swiglu_keeps_the_parameter_count_of_the_gelu_mlp() -> None:
    gelu, swiglu = tiny(n_embd=192, n_head=6), tiny(n_embd=192, n_head=6, mlp="swiglu")
    assert swiglu.mlp_width == 512 and swiglu.mlp_width % 32 == 0  # 2/3 * 4 * 192
    mlp_params = 3 * 192 * swiglu.mlp_width
    assert abs(mlp_params - 8 * 192 * 192) / (8 * 192 * 192) < 0.05
    assert gelu.mlp_width == 768


def test_zero_init_starts_every_block_as_the_identity() -> None:
    model = GPT(tiny(zero_init_proj=True, tie_embeddings=False))
    for block in model.transformer.h:
        assert block.attn.c_proj.weight.abs().sum() == 0 and block.mlp.c_proj.weight.abs().sum() == 0
    assert model.lm_head.weight.abs().sum() == 0
    # Tied, the head is the token embedding and keeps its random start.
    tied = GPT(tiny(zero_init_proj=True))
    assert tied.lm_head.weight.abs().sum() > 0


def test_softcap_bounds_the_logits() -> None:
    model = trained_a_little(tiny(logit_softcap=2.0))
    with torch.no_grad():
        model.lm_head.weight.mul_(100)
    assert model(torch.randint(0, 19, (2, 12))).abs().max() <= 2.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"position": "alibi"}, "model.gpt.position must be one of learned, rope, got 'alibi'"),
        ({"norm": "batchnorm"}, "model.gpt.norm must be one of layernorm, rmsnorm"),
        ({"mlp": "geglu"}, "model.gpt.mlp must be one of gelu, relu2, swiglu"),
        ({"qk_norm": "yes"}, "model.gpt.qk_norm must be true or false"),
        ({"tie_embeddings": 1}, "model.gpt.tie_embeddings must be true or false"),
        ({"zero_init_proj": None}, "model.gpt.zero_init_proj must be true or false"),
        ({"rope_base": 0.5}, "model.gpt.rope_base must be a number above 1"),
        ({"mlp_ratio": 0}, "model.gpt.mlp_ratio must be a positive number"),
        ({"logit_softcap": -1.0}, "model.gpt.logit_softcap must be 0 \\(off\\) or a positive number"),
        ({"position": "rope", "n_embd": 18, "n_head": 6}, "model.gpt.position rope .* head size .* must be even"),
    ],
)
def test_bad_option_values_are_refused_naming_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(MinigptError, match=message):
        tiny(**overrides)


def test_orthogonalize_brings_singular_values_near_one() -> None:
    torch.manual_seed(0)
    matrices = torch.randn(3, 8, 24) * torch.logspace(-1, 1, 8)[:, None]  # rows 100x apart in scale
    singular = torch.linalg.svdvals(orthogonalize(matrices))
    assert singular.min() > 0.6 and singular.max() < 1.25
    assert torch.linalg.svdvals(matrices).max() / torch.linalg.svdvals(matrices).min() > 50


def optimizer_for(model: GPT) -> MuonAdamW:
    return muon_adamw(model.parameter_roles(), matrices_lr=0.02, embeddings_lr=0.01, gains_lr=0.005, weight_decay=0.1)


@pytest.mark.parametrize("name", ["default", "modern"])
def test_muon_groups_cover_every_parameter_once(name: str) -> None:
    model = GPT(tiny(**OPTIONS[name]))
    optimizer = optimizer_for(model)
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    kinds = [(group["algorithm"], group["lr"], group["weight_decay"]) for group in optimizer.param_groups]
    assert kinds == [("muon", 0.02, 0.1), ("adamw", 0.01, 0.1), ("adamw", 0.005, 0.0)]
    assert all(p.dim() == 2 for p in optimizer.param_groups[0]["params"])


@pytest.mark.parametrize("ns_dtype", [torch.float32, torch.bfloat16])
def test_a_few_muon_steps_lower_the_loss(ns_dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = GPT(tiny(**OPTIONS["modern"]))
    optimizer = muon_adamw(model.parameter_roles(), 0.02, 0.01, ns_dtype=ns_dtype)
    ids = torch.randint(0, 19, (4, 13))

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())

    first = loss().item()
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < first - 0.5


def test_a_lambda_schedule_scales_every_group_and_state_round_trips() -> None:
    model = GPT(tiny(**OPTIONS["modern"]))
    optimizer = optimizer_for(model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == [0.01, 0.005, 0.0025]
    again = optimizer_for(model)
    again.load_state_dict(optimizer.state_dict())
    assert again.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()


def test_muon_refuses_parameters_that_are_not_matrices() -> None:
    with pytest.raises(MinigptError, match="Muon orthogonalises matrices"):
        MuonAdamW([{"params": [torch.nn.Parameter(torch.ones(3))], "algorithm": "muon"}])


def test_value_embeddings_mix_each_layers_own_table_into_the_values() -> None:
    """With the mix's embedding weight at zero the model is the one without value embeddings."""
    without = trained_a_little(tiny(position="rope"))
    torch.manual_seed(1)
    model = GPT(tiny(position="rope", value_embeddings=True))
    model.load_state_dict(without.state_dict(), strict=False)
    ids = torch.randint(0, 19, (2, 12))
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.value_mix.copy_(torch.tensor([1.0, 0.0]))
        torch.testing.assert_close(model(ids), without(ids))
        model.transformer.h[1].attn.value_mix.copy_(torch.tensor([1.0, 0.5]))
        changed = model(ids)
    assert not torch.allclose(changed, without(ids))
    assert len(model.transformer.ve) == 2
    assert model.num_parameters(non_embedding=False) - model.num_parameters() >= 2 * 19 * 16
