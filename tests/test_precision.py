"""Precision: the machine report, ``auto`` resolution (capabilities injected), int8 quantization, ONNX Runtime."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import usdrl.precision as precision_module
from usdrl import USDRL, ConfigError, InputError, USDRLConfig
from usdrl.cli import main
from usdrl.encoder import Attention
from usdrl.precision import GpuInfo, MachineInfo, _cpu_features, machine_info, resolve_precision

QuantizedLinear = torch.ao.nn.quantized.dynamic.Linear
AMX_CPU = MachineInfo("Xeon", ("AVX2", "AVX-512", "AVX512-VNNI", "AVX512-BF16", "AMX-BF16"), "AVX512", 2)
AVX2_CPU = MachineInfo("EPYC", ("AVX2",), "AVX2", 2)
AMX_WITH_AVX2_KERNELS = MachineInfo("Xeon", AMX_CPU.cpu_features, "AVX2", 2)
AMPERE = GpuInfo(0, "A100", (8, 0), bf16=True, tf32=True)
VOLTA = GpuInfo(0, "V100", (7, 0), bf16=False, tf32=False)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(precision_module, "_warned", set())


def tiny(**overrides):
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", **{"num_frames": 16, **overrides})).eval()


def clips(n, config, seed=0):
    return torch.randn((n, *config.input_shape), generator=torch.Generator().manual_seed(seed))


# ---- the machine -------------------------------------------------------------------------
def test_cpu_features_from_flags_and_native_bf16():
    assert _cpu_features({"avx2", "fma", "avx512f", "amx_bf16"}) == ("AVX2", "AVX-512", "AMX-BF16")
    assert AMX_CPU.cpu_bf16 and not AVX2_CPU.cpu_bf16
    assert not AMX_WITH_AVX2_KERNELS.cpu_bf16      # bf16 hardware, but torch's AVX2 kernels emulate bf16
    assert "native bf16: no" in AVX2_CPU.summary() and "GPU: none" in AVX2_CPU.summary()


def test_machine_info_reports_this_machine():
    info = machine_info()
    assert info.kernel_isa == torch.backends.cpu.get_cpu_capability()
    assert info.threads == torch.get_num_threads()
    assert len(info.gpus) == torch.cuda.device_count()
    assert set(info.cpu_features) <= set(precision_module.CPU_FEATURES)


def test_info_command_prints_the_instruction_sets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in out and "native bf16:" in out


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"), reason="an x86 CPU")
def test_avx2_kernels_resolve_auto_to_fp32_for_real():
    """ATEN_CPU_CAPABILITY=avx2 makes torch run its AVX2 kernels: bf16 is emulated there."""
    code = ("from usdrl.precision import machine_info, resolve_precision; "
            "print(machine_info().kernel_isa, resolve_precision('auto', 'cpu').name)")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["AVX2", "fp32"]


# ---- auto and explicit requests ----------------------------------------------------------
@pytest.mark.parametrize("machine,device,name,autocast,tf32", [
    (AMX_CPU, "cpu", "bf16", torch.bfloat16, False),
    (AVX2_CPU, "cpu", "fp32", None, False),
    (AMX_WITH_AVX2_KERNELS, "cpu", "fp32", None, False),
    (MachineInfo("Xeon", AMX_CPU.cpu_features, "AVX512", 2, (AMPERE,)), "cuda", "bf16", torch.bfloat16, True),
    (MachineInfo("Xeon", AMX_CPU.cpu_features, "AVX512", 2, (VOLTA,)), "cuda:0", "fp16", torch.float16, False),
    (AMX_CPU, "mps", "fp32", None, False),
])
def test_auto(machine, device, name, autocast, tf32):
    resolved = resolve_precision("auto", device, machine=machine)
    assert (resolved.name, resolved.autocast, resolved.tf32) == (name, autocast, tf32)
    assert resolved.device_type == torch.device(device).type


def test_explicit_bf16_where_emulated_runs_and_warns_once(caplog):
    with caplog.at_level(logging.WARNING, logger="usdrl.precision"):
        first = resolve_precision("bf16", "cpu", machine=AVX2_CPU)
        second = resolve_precision(torch.bfloat16, "cpu", machine=AVX2_CPU)
    assert first.autocast == second.autocast == torch.bfloat16
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "emulated" in warnings[0] and "'auto'" in warnings[0] and "int8" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="usdrl.precision"):
        resolve_precision("bf16", "cpu", machine=AMX_CPU)
    assert not caplog.records


def test_bf16_and_tf32_on_an_old_gpu_warn():
    machine = MachineInfo("Xeon", (), "AVX2", 2, (VOLTA,))
    assert resolve_precision("bf16", "cuda", machine=machine).name == "bf16"
    tf32 = resolve_precision("tf32", "cuda", machine=machine)
    assert (tf32.name, tf32.autocast, tf32.tf32) == ("tf32", None, False)
    assert precision_module._warned == {("bf16", "cuda"), ("tf32", "cuda")}


def test_names_aliases_and_refusals():
    for request, name in ((None, "fp32"), ("float32", "fp32"), (torch.float16, "fp16"), ("BF16", "bf16"),
                          ("int8", "int8")):
        assert resolve_precision(request, "cpu", machine=AMX_CPU).name == name
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu", machine=AMX_CPU)
    with pytest.raises(ConfigError, match="float32, bfloat16 or float16"):
        resolve_precision(torch.int8, "cpu", machine=AMX_CPU)
    with pytest.raises(ConfigError, match="int8 is dynamic quantization for CPU inference"):
        resolve_precision("int8", "cpu", training=True, machine=AMX_CPU)
    with pytest.raises(ConfigError, match="device cuda"):
        resolve_precision("int8", "cuda", machine=AMX_CPU)
    with pytest.raises(ConfigError, match="fp16 training needs a CUDA device"):
        resolve_precision("fp16", "cpu", training=True, machine=AMX_CPU)


def test_context_enters_autocast_and_restores_matmul_precision():
    before = torch.get_float32_matmul_precision()
    with resolve_precision("bf16", "cpu", machine=AMX_CPU).context():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    machine = MachineInfo("Xeon", (), "AVX512", 2, (AMPERE,))
    with resolve_precision("tf32", "cuda", machine=machine).context():
        assert torch.get_float32_matmul_precision() == "high" and not torch.is_autocast_enabled("cuda")
    assert torch.get_float32_matmul_precision() == before and not torch.is_autocast_enabled("cpu")


def test_call_work_and_the_cpu_bf16_threshold():
    # a hidden-128 DSTE, 64 frames, 2 x 25 joints: 64 + 50 tokens, 128 * 128 per token; 4 clips is the threshold
    assert precision_module.call_work(4, 114, 128) == 4 * 114 * 16384 == 7_471_104
    assert precision_module.CPU_BF16_MIN_WORK == 7_471_104
    # tiny with 16 frames: 16 + 50 tokens of width 64
    assert tiny().call_work(3) == 3 * 66 * 64 * 64
    threshold = precision_module.CPU_BF16_MIN_WORK
    assert resolve_precision("auto", "cpu", machine=AMX_CPU, work=threshold - 1).name == "fp32"
    assert resolve_precision("auto", "cpu", machine=AMX_CPU, work=threshold).name == "bf16"
    assert resolve_precision("auto", "cpu", machine=AMX_CPU).name == "bf16"          # no size given: large
    assert resolve_precision("auto", "cpu", machine=AVX2_CPU, work=10 * threshold).name == "fp32"
    # the threshold is the CPU's: a GPU takes bf16 for any size, and an explicit bf16 is kept
    assert resolve_precision("auto", "cuda", machine=MachineInfo("Xeon", (), "AVX2", 2, (AMPERE,)),
                             work=1).name == "bf16"
    assert resolve_precision("bf16", "cpu", machine=AMX_CPU, work=1).name == "bf16"


def test_encode_auto_follows_the_machine_and_the_batch(monkeypatch):
    model = tiny()
    per_call = -(-precision_module.CPU_BF16_MIN_WORK // model.call_work(1))   # clips from which bf16 pays: 28
    x = clips(per_call, model.config)
    fp32 = model.encode(x)
    monkeypatch.setattr(precision_module, "machine_info", lambda: AVX2_CPU)
    assert torch.equal(model.encode(x, dtype="auto"), fp32)      # fp32 on an AVX2 CPU
    monkeypatch.setattr(precision_module, "machine_info", lambda: AMX_CPU)
    auto = model.encode(x, dtype="auto")
    assert torch.equal(auto, model.encode(x, dtype=torch.bfloat16)) and not torch.equal(auto, fp32)
    # in batches too small for bf16 to pay, auto is fp32 on the same machine
    assert torch.equal(model.encode(x, dtype="auto", batch_size=per_call - 1), fp32)


# ---- the attention module and int8 -------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_multihead_attention(causal):
    torch.manual_seed(0)
    ours = Attention(16, 2)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_()
    reference = nn.MultiheadAttention(16, 2, batch_first=True)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 16)
    mask = torch.ones(5, 5, dtype=torch.bool).triu(1) if causal else None
    expected = reference(x, x, x, attn_mask=mask, need_weights=False)[0]
    torch.testing.assert_close(ours(x, causal=causal), expected, rtol=1e-5, atol=1e-5)


def test_state_dict_keeps_the_multihead_attention_names():
    model = tiny()
    keys = model.state_dict().keys()
    prefix = "encoder.temporal.layers.0.attn."
    assert prefix + "in_proj_weight" in keys and prefix + "in_proj_bias" in keys
    assert not any(".in_proj." in k for k in keys)
    assert len(keys) == len(dict(model.named_parameters()))    # the same tensors, renamed
    other = tiny()
    with torch.no_grad():
        other.encoder.temporal.layers[0].attn.in_proj.weight.add_(1.0)
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.encoder.temporal.layers[0].attn.in_proj_weight,
                       model.encoder.temporal.layers[0].attn.in_proj_weight)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*quantize_per_tensor")  # torch's move to torchao
def test_standard_dynamic_quantization_applies():
    model = tiny(num_classes=3)
    x = clips(8, model.config)
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    attn = quantized.encoder.temporal.layers[0].attn
    assert isinstance(attn.in_proj, QuantizedLinear) and isinstance(attn.out_proj, QuantizedLinear)
    cosine = nn.functional.cosine_similarity(quantized.encode(x), model.encode(x), dim=1)
    assert cosine.min() > 0.99 and quantized(x).shape == (8, 3)


def test_quantize_keeps_embeddings_float_and_leaves_the_model():
    model = tiny()
    x = clips(8, model.config)
    before = model.encode(x)
    quantized = model.quantize()
    assert type(quantized.encoder.temporal.embed[0]) is nn.Linear
    fc1 = quantized.encoder.spatial.layers[0].ca.mlp.fc1
    assert isinstance(fc1, QuantizedLinear) and fc1.weight().qscheme() == torch.per_channel_affine
    assert type(model.encoder.spatial.layers[0].ca.mlp.fc1) is nn.Linear
    assert torch.equal(model.encode(x), before)
    int8 = model.encode(x, dtype="int8")
    assert torch.equal(int8, quantized.encode(x)) and not torch.equal(int8, before)
    assert nn.functional.cosine_similarity(int8, before, dim=1).min() > 0.99
    # int8 on CUDA is refused; without CUDA the missing device is named first
    with pytest.raises(ConfigError, match="CPU inference" if torch.cuda.is_available() else "CUDA is not available"):
        model.encode(x, dtype="int8", device="cuda")


# ---- ONNX Runtime ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from usdrl.export import export_onnx

    model = tiny()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(model, path)
    return model, path


def test_onnxruntime_model_matches_eager_and_int8_is_close(exported, tmp_path):
    from usdrl.export import OnnxRuntimeModel, onnxruntime_model, quantize_onnx

    model, path = exported
    x = clips(5, model.config)
    eager = model.encode(x)
    runner = OnnxRuntimeModel(path, threads=1)
    assert runner.output == "embedding" and runner.config == model.config
    torch.testing.assert_close(runner.encode(x, batch_size=2), eager, rtol=1e-4, atol=1e-5)
    single = runner.encode(x[0].numpy(), normalize=True, convert_to_numpy=True)
    np.testing.assert_allclose(single, model.encode(x[0], normalize=True).numpy(), rtol=1e-4, atol=1e-5)
    int8_path = quantize_onnx(path, tmp_path / "int8.onnx")
    assert int8_path.stat().st_size < path.stat().st_size
    import onnx

    nodes = {node.name: node.op_type for node in onnx.load(str(int8_path)).graph.node}
    embeddings = [f"/encoder/{stream}/embed/embed.{i}/MatMul" for stream in ("temporal", "spatial") for i in (0, 3)]
    assert all(nodes[name] == "MatMul" for name in embeddings)        # the stream embeddings stay float32
    assert "/encoder/temporal/layers.0/attn/in_proj/MatMul_quant" in nodes   # the layers' products are int8
    int8 = onnxruntime_model(path, int8=True).encode(x)
    assert nn.functional.cosine_similarity(int8, eager, dim=1).min() > 0.99 and not torch.equal(int8, eager)
    with pytest.raises(InputError, match=r"expected clips \(N, 3, 16, 25, 2\)"):
        runner.encode(torch.zeros(2, 3, 15, 25, 2))
    with pytest.raises(InputError, match="NaN"):
        runner.encode(torch.full((1, *model.config.input_shape), float("nan")))


def test_onnxruntime_refuses_a_file_without_usdrl_metadata(exported, tmp_path):
    import onnx

    from usdrl.export import OnnxRuntimeModel

    proto = onnx.load(str(exported[1]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(ConfigError, match="not a usdrl export"):
        OnnxRuntimeModel(tmp_path / "plain.onnx")


def test_encode_cli_backends_and_dtypes(exported, tmp_path, capsys):
    model, path = exported
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    x = clips(3, model.config).numpy()
    np.save(tmp_path / "clips.npy", x)
    eager = model.encode(x, convert_to_numpy=True)
    ort = ["--backend", "onnxruntime"]
    for source, options in ((path, ort), (path, [*ort, "--dtype", "int8"]), (folder, [*ort, "--dtype", "auto"]),
                            (folder, ["--dtype", "auto"]), (folder, ["--dtype", "int8"])):
        out = tmp_path / "out.npy"
        assert main(["encode", str(source), str(tmp_path / "clips.npy"), str(out), *options]) == 0
        got = np.load(out)
        cosine = (got * eager).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(eager, axis=1)
        assert got.shape == eager.shape and cosine.min() > 0.99
    assert main(["encode", str(path), str(tmp_path / "clips.npy"), str(tmp_path / "d.npy"), "--backend",
                 "onnxruntime", "--dense"]) == 1
    assert "--backend onnxruntime computes clip embeddings" in capsys.readouterr().err
    assert not (tmp_path / "d.npy").exists()


# ---- on a GPU (benchmarks/gpu_check.py runs these) ---------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("dtype", ["auto", "fp32", "tf32", "bf16", "fp16"])
def test_cuda_encode_per_precision_is_close_to_cpu_fp32(dtype):
    model = tiny()
    x = clips(6, model.config)
    cpu = model.encode(x)
    gpu = model.encode(x, device="cuda", dtype=dtype)
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float32
    assert nn.functional.cosine_similarity(gpu, cpu, dim=1).min() > 0.999


@pytest.mark.parametrize("causal", [False, True])
def test_eval_batching_gives_the_training_path_values(causal):
    """In eval mode a DST layer runs its three attention inputs and its two DSA branches as batches."""
    model = tiny(drop_path=0.0, causal=causal)
    x = clips(3, model.config)
    with torch.no_grad():
        batched = model.encoder(x)
        model.train()
        separate = model.encoder(x)
    for got, want in zip(batched, separate, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_streaming_precision_is_chosen_once_for_single_windows(monkeypatch):
    from usdrl.tasks.streaming import MultiTrackDetector, StreamingDetector

    monkeypatch.setattr(precision_module, "machine_info", lambda: AMX_CPU)
    model = tiny(num_frame_classes=4)
    frames = clips(1, model.config)[0].numpy()                  # (C, T, V, M): one window
    fp32 = StreamingDetector(model, precision="fp32").push(frames)
    # one window of the tiny model is far below the CPU's bf16 threshold: auto is fp32, bit for bit
    auto = StreamingDetector(model)
    assert auto.precision.name == "fp32"
    np.testing.assert_array_equal(auto.push(frames).scores, fp32.scores)
    bf16 = StreamingDetector(model, precision="bf16").push(frames)
    assert bf16.scores.dtype == np.float32 and bf16.scores.shape == (model.config.num_frames, 4)
    np.testing.assert_allclose(bf16.scores.sum(1), 1.0, rtol=1e-5)
    assert not np.array_equal(bf16.scores, fp32.scores)
    np.testing.assert_allclose(bf16.scores, fp32.scores, atol=0.05)
    # a model whose single window pays for bf16 gets it; several tracks keep the one precision
    wide = tiny(hidden_size=512, num_heads=4, num_frame_classes=4)
    assert wide.call_work(1) >= precision_module.CPU_BF16_MIN_WORK
    served = MultiTrackDetector(wide)
    assert served.precision.name == "bf16"
    served.push({0: frames, 1: frames})
    assert {d.precision.name for d in served.detectors.values()} == {"bf16"}
    # int8 quantizes once, for every track
    quantized = MultiTrackDetector(model, precision="int8")
    quantized.push({0: frames, 1: frames})
    assert {id(d.model) for d in quantized.detectors.values()} == {id(quantized.model)}
    assert isinstance(quantized.model.encoder.temporal.layers[0].attn.in_proj, QuantizedLinear)
