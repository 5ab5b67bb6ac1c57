from pathlib import Path

import pytest
import torch
from torch import nn

from sagan_restore.config import GeneratorConfig
from sagan_restore.models.attention import SelfAttention2d
from sagan_restore.models.discriminator import PatchDiscriminator, receptive_field
from sagan_restore.models.generator import UNetGenerator, count_flops


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(16, 16), (21, 34)])
def test_generator_output_shape_for_every_scale(scale, size):
    g = UNetGenerator(GeneratorConfig(width=8, depth=2, attn_levels=(1, 2), scale=scale))
    x = torch.rand(2, 3, *size)
    assert g(x).shape == (2, 3, size[0] * scale, size[1] * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_one_step_upsampler_gives_the_same_shape_for_a_fraction_of_the_tail_flops(scale):
    """ESPCN's tail: one conv at the input resolution, one pixel shuffle; no layer at the output size."""
    steps = UNetGenerator(GeneratorConfig(width=8, depth=2, scale=scale))
    once = UNetGenerator(GeneratorConfig(width=8, depth=2, scale=scale, upsampler="once"))
    x = torch.rand(1, 3, 12, 20)
    assert once(x).shape == steps(x).shape == (1, 3, 12 * scale, 20 * scale)
    assert [type(m) for m in once.tail] == [nn.Conv2d, nn.PixelShuffle]
    assert count_flops(once, 64, 64) < count_flops(steps, 64, 64)


def test_one_step_upsampler_needs_super_resolution():
    with pytest.raises(ValueError, match="upsampler 'once' is for super-resolution"):
        GeneratorConfig(upsampler="once")
    with pytest.raises(ValueError, match="upsampler must be one of"):
        GeneratorConfig(scale=2, upsampler="twice")


def test_grey_generator_shape():
    g = UNetGenerator(GeneratorConfig(in_channels=1, out_channels=1, width=8, depth=2))
    assert g(torch.rand(1, 1, 20, 20)).shape == (1, 1, 20, 20)


def test_fresh_attention_block_is_identity():
    torch.manual_seed(0)
    block = SelfAttention2d(16)
    assert block.gamma.item() == 0.0
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(block(x), x)


def test_attention_matches_the_sagan_equation():
    torch.manual_seed(0)
    block = SelfAttention2d(16)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(2, 16, 4, 6)
    q, k, v = block.q(x).flatten(2), block.k(x).flatten(2), block.v(x).flatten(2)  # (B, C', N)
    attn = (q.transpose(1, 2) @ k / q.shape[1] ** 0.5).softmax(-1)  # (B, N, N)
    expected = x + 0.7 * (v @ attn.transpose(1, 2)).view_as(x)
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_attention_is_placed_at_the_requested_levels():
    g = UNetGenerator(GeneratorConfig(width=8, depth=3, attn_levels=(2, 3)))
    widths = sorted(m.v.in_channels for m in g.modules() if isinstance(m, SelfAttention2d))
    assert widths == [32, 64]
    assert not any(isinstance(m, SelfAttention2d) for m in UNetGenerator(GeneratorConfig(attn_levels=())).modules())


def test_generator_has_no_batch_statistics_or_transposed_convs():
    g = UNetGenerator(GeneratorConfig(width=8, depth=2, scale=2))
    kinds = {type(m) for m in g.modules()}
    assert not kinds & {nn.BatchNorm2d, nn.ConvTranspose2d, nn.InstanceNorm2d}
    x = torch.rand(1, 3, 16, 16)
    g.train()
    out_train = g(x)
    g.eval()
    assert torch.equal(out_train, g(x))  # train and eval compute the same function


def test_fresh_generator_is_close_to_identity_through_global_residual():
    torch.manual_seed(0)
    g = UNetGenerator(GeneratorConfig(width=8, depth=2))
    x = torch.rand(1, 3, 32, 32)
    # The residual branch starts small, so the output starts near the input rather than at random.
    assert (g(x) - x).abs().mean() < 0.2


def test_patch_discriminator_receptive_field_and_conditioning():
    assert receptive_field(3) == 70
    d = PatchDiscriminator(6, width=8)
    logits = d(torch.rand(2, 3, 96, 96), torch.rand(2, 3, 96, 96))
    assert logits.shape == (2, 1, 10, 10)
    # SR: the low-resolution input is upsampled to the target's size before concatenation.
    assert d(torch.rand(2, 3, 24, 24), torch.rand(2, 3, 96, 96)).shape == (2, 1, 10, 10)


def test_spectral_norm_option():
    d = PatchDiscriminator(6, width=8, spectral_norm=True, norm="none")
    assert any(hasattr(m, "weight_orig") for m in d.modules())
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in d.modules())


def test_spectral_norm_with_batch_norm_keeps_both():
    """--spectral-norm --d-norm batch used to build a D with no normalisation at all."""
    d = PatchDiscriminator(6, width=8, spectral_norm=True, norm="batch")
    assert d.batch_norm
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3
    assert any(hasattr(m, "weight_orig") for m in d.modules())


def test_flop_count_is_linear_in_pixels_for_convolutions_and_quadratic_for_attention():
    convs_only = UNetGenerator(GeneratorConfig(width=8, depth=2, attn_levels=()))
    assert count_flops(convs_only, 64, 64) == 4 * count_flops(convs_only, 32, 32)
    attention = UNetGenerator(GeneratorConfig(width=8, depth=2, attn_levels=(2,)))
    c = 8 * 2**2  # channels at level 2, where tokens are (H/4) * (W/4)
    n_small, n_large = (32 // 4) ** 2, (64 // 4) ** 2
    expected_extra = 2 * (n_large**2 - 4 * n_small**2) * (c // 8 + c)  # q k^T and attn @ v, beyond linear
    assert count_flops(attention, 64, 64) - 4 * count_flops(attention, 32, 32) == expected_extra


def test_flop_count_of_a_12_megapixel_image_needs_no_memory():
    """A real forward at 12 MP needs tens of GB; counting on the meta device must stay near the interpreter's
    own footprint. Measured as the peak RSS of a fresh process."""
    import subprocess
    import sys

    code = ("import resource, torch\n"
            "from sagan_restore.config import GeneratorConfig\n"
            "from sagan_restore.models.generator import UNetGenerator, count_flops\n"
            "model = UNetGenerator(GeneratorConfig())\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "flops = count_flops(model, 3000, 4000)\n"
            "print(flops, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    flops, grown_kb = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True).stdout.split())
    assert flops > 1e13
    assert grown_kb < 300_000  # under 300 MB, against 20+ GB for the activations themselves


def test_lean_attention_for_large_inputs_computes_the_same(monkeypatch):
    """Where gradients flow (training), inputs above LEAN_ABOVE weights take the per-head fused form."""
    from sagan_restore.models import attention

    torch.manual_seed(0)
    block = attention.SelfAttention2d(64)
    block.gamma.data.fill_(0.7)
    x = torch.randn(2, 64, 12, 10)
    plain = block(x)
    heads = []
    fused = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda q, k, v: heads.append(q.shape[1]) or fused(q, k, v))
    monkeypatch.setattr(attention, "LEAN_ABOVE", 0)  # force the per-head form at this small size
    lean = block(x)
    assert heads == [8]
    torch.testing.assert_close(lean, plain, atol=1e-5, rtol=1e-5)


def test_cpu_inference_runs_attention_in_row_blocks(monkeypatch):
    """At inference on a CPU, attention runs a block of query rows at a time (no fused kernel), in float32
    and under bf16 autocast, and computes what the fused kernel does; training keeps the fused kernel."""
    from sagan_restore.models import attention

    fused_calls = []
    fused = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda q, k, v: fused_calls.append(q.shape) or fused(q, k, v))
    monkeypatch.setattr(attention, "ROW_BLOCK_WEIGHTS", 1024 * 300)  # 300 rows a block: 4 blocks, the last short
    torch.manual_seed(0)
    block = attention.SelfAttention2d(16)
    block.gamma.data.fill_(0.7)
    x = torch.randn(2, 16, 32, 32)  # 1,024 tokens
    exact = block(x)  # gradients enabled: the fused kernel
    assert len(fused_calls) == 1
    with torch.no_grad():
        blocks = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = block(x)
    assert len(fused_calls) == 1  # neither inference call used it
    torch.testing.assert_close(blocks, exact, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(half.float(), exact, atol=0.05, rtol=0.02)


def test_row_blocks_keep_the_logits_in_float32_under_autocast():
    """Large logits rounded to bf16 would move the weights by several percent; the blocks compute them in
    float32 as the fused kernels do, so under autocast only the weights' last rounding to bf16 is left."""
    from sagan_restore.models.attention import attention_by_row_blocks

    torch.manual_seed(0)
    q, k = (4 * torch.randn(1, 512, 8).bfloat16() for _ in range(2))  # logits of a few tens
    v = torch.randn(1, 512, 64).bfloat16()

    def softmax_attention(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.double() / 8 ** 0.5, -1) @ v.double()

    exact = softmax_attention(q.double() @ k.double().transpose(1, 2))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        half = attention_by_row_blocks(q, k, v)
    bf16_logits = softmax_attention(q @ k.transpose(1, 2))  # what the same product would give in bf16
    assert (half.double() - exact).abs().max() < 0.5 * (bf16_logits - exact).abs().max()


@pytest.mark.parametrize("cfg", [
    GeneratorConfig(width=8, depth=2, block="naf", blocks=(1, 2, 1)),
    GeneratorConfig(width=8, depth=2, unshuffle=2, blocks=(0, 1, 2)),
    GeneratorConfig(in_channels=1, out_channels=1, width=8, depth=1, block="naf", unshuffle=2),
])
def test_variant_generators_keep_the_input_size_and_pad_to_their_multiple(cfg):
    model = UNetGenerator(cfg).eval()
    assert model.multiple == cfg.unshuffle * 2**cfg.depth
    x = torch.rand(1, cfg.in_channels, 21, 30)  # not a multiple of anything
    with torch.no_grad():
        assert model(x).shape == x.shape


def test_blocks_per_level_build_that_many_blocks():
    from sagan_restore.models.generator import NAFBlock

    model = UNetGenerator(GeneratorConfig(width=8, depth=2, block="naf", blocks=(1, 2, 3), attn_levels=()))
    assert [len(stage) for stage in model.encoders] == [1, 2]
    assert [len(stage) for stage in model.decoders] == [1, 2]
    assert len(model.bottleneck) == 3
    assert sum(isinstance(m, NAFBlock) for m in model.modules()) == 1 + 2 + 3 + 1 + 2


def test_fresh_naf_block_is_identity_and_its_scales_learn():
    from sagan_restore.models.generator import NAFBlock

    block = NAFBlock(8)
    x = torch.randn(2, 8, 12, 12)
    assert torch.equal(block(x), x)
    block(x).square().sum().backward()
    assert block.beta.grad.abs().sum() > 0 and block.gamma.grad.abs().sum() > 0


def test_generator_config_rejects_bad_variants():
    with pytest.raises(ValueError, match="one count per level"):
        GeneratorConfig(depth=3, blocks=(1, 2))
    with pytest.raises(ValueError, match="block must be"):
        GeneratorConfig(block="transformer")
    with pytest.raises(ValueError, match="unshuffle is for restoration"):
        GeneratorConfig(unshuffle=2, scale=4)


def test_files_of_the_first_architecture_still_load(tmp_path):
    """Shipped weights were saved before `block` and `unshuffle` existed: their metadata lacks both."""
    from sagan_restore.checkpoint import load_generator
    from sagan_restore.config import generator_config_from_dict

    cfg = generator_config_from_dict({"in_channels": 3, "out_channels": 3, "width": 8, "depth": 2, "blocks": 1,
                                      "attn_levels": [2], "scale": 1})
    assert (cfg.block, cfg.unshuffle, cfg.level_blocks) == ("res", 1, (1, 1, 1))
    model, _ = load_generator(Path(__file__).resolve().parent.parent / "src/sagan_restore/weights/denoise.safetensors")
    assert model.cfg.block == "res" and model.cfg.unshuffle == 1


def test_variant_architecture_round_trips_through_safetensors(tmp_path):
    from sagan_restore.checkpoint import load_generator, save_generator

    torch.manual_seed(0)
    model = UNetGenerator(GeneratorConfig(width=8, depth=2, block="naf", blocks=(1, 1, 2), unshuffle=2)).eval()
    save_generator(tmp_path / "g.safetensors", model)
    loaded, _ = load_generator(tmp_path / "g.safetensors")
    assert loaded.cfg == model.cfg
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))


def test_noise_estimator_finds_the_gaussian_noise_level_of_a_photo():
    from skimage import data

    from sagan_restore.models.noise_level import estimate_noise_level

    clean = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    gen = torch.Generator().manual_seed(0)
    for sigma in (15, 25, 50):
        noisy = clean + torch.randn(clean.shape, generator=gen) * sigma / 255
        assert estimate_noise_level(noisy).item() * 255 == pytest.approx(sigma, abs=1.5)


def test_noise_map_model_feeds_the_estimate_as_an_input_plane():
    torch.manual_seed(0)
    model = UNetGenerator(GeneratorConfig(width=8, depth=2, noise_map=True)).eval()
    assert model.head.in_channels == 4
    from sagan_restore.models.noise_level import estimate_noise_level

    seen = []
    model.head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    x = torch.rand(2, 3, 22, 22) * torch.tensor([0.1, 1.0]).view(2, 1, 1, 1)  # two different noise levels
    with torch.no_grad():
        assert model(x).shape == x.shape
    plane = seen[0][:, 3]  # padded to 24 x 24: the plane covers the padding too
    assert plane.shape == (2, 24, 24)
    expected = estimate_noise_level(x)
    assert torch.allclose(plane, expected.view(2, 1, 1).expand_as(plane))
    assert expected[1] > 5 * expected[0]


@pytest.mark.parametrize("cfg", [GeneratorConfig(width=8, depth=2), GeneratorConfig(width=8, depth=2, scale=4),
                                 GeneratorConfig(width=8, depth=2, block="naf", unshuffle=2, blocks=(1, 1, 2))])
def test_torch_flop_counter_counts_what_the_hand_written_formula_did(cfg):
    """count_flops moved to torch's FlopCounterMode; the formula it replaced is the reference here."""

    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    def attn_hook(module, inputs, output):
        nonlocal total
        b, c, h, w = inputs[0].shape
        total += 2 * b * (h * w) ** 2 * (max(c // 8, 1) + c)  # q k^T and attn @ v

    model = UNetGenerator(cfg)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, SelfAttention2d):
            m.register_forward_hook(attn_hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 48, 64))
    assert count_flops(model, 48, 64) == total
