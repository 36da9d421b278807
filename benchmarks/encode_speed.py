"""`encode` speed per precision and backend against fp32 and the reference implementation, and agreement.

Usage: python benchmarks/encode_speed.py [--preset base] [--batch-size 8] [--rounds 5] [--threads 1]
                                         [--skip onnx] [--compile] [--sizes] [--clock cpu]

Speed: the ``--preset`` model (``base`` is the reference size) encodes one batch of clips per
call, on the CPU: the literal reference implementation (``tests/reference_impl.py``, same
weights), fp32, ``dtype="auto"``, bf16, int8 (``model.quantize()``), and ONNX Runtime fp32 and
int8 (``usdrl.export``). All in one process, in interleaved rounds (each round times every
variant once), so the ratios hold on a shared machine; each ratio is given as the median of the
per-round ratios and as the ratio of the best rounds (the least disturbed by other processes).
Times are this process's CPU time by default (``--clock cpu``), which other jobs on a shared
machine disturb far less than wall time; ``--clock wall`` on a machine to itself.

``--sizes`` also times bf16 against fp32 for models of hidden size 128 / 256 / 512 on 1, 2 and 4
clips per call: where ``dtype="auto"`` stops using bf16 on a CPU (casts cost more than they save).

The AVX2 path of an AVX-512 machine (what PyTorch, oneDNN and MKL run on an AVX2-only CPU; fbgemm's
int8 kernels still pick AVX-512 / VNNI, ONNX Runtime its own):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/encode_speed.py

Agreement: the embedded model ``usdrl-synthetic-small`` on held-out synthetic clips (a seed
its training did not draw): top-1 of its clip head and embedding cosine, each path against fp32.
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import CLOCKS, interleaved_times, setup_logging, speedup

from usdrl import USDRL, USDRLConfig
from usdrl.convert import load_reference_checkpoint
from usdrl.data.preprocess import to_model_input
from usdrl.data.synthetic import make_clips
from usdrl.export import OnnxRuntimeModel, export_onnx, onnxruntime_model, quantize_onnx
from usdrl.precision import resolve_precision

logger = logging.getLogger("encode_speed")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def reference_pair(config: USDRLConfig) -> tuple[torch.nn.Module, USDRL]:
    """The literal reference DSTE with a clip head, and the same weights loaded into a :class:`USDRL`."""
    from reference_impl import LiteralDownstream, LiteralDSTE

    torch.manual_seed(0)
    backbone = LiteralDSTE(config.temporal_input_dim, config.spatial_input_dim, config.hidden_size,
                           config.num_heads, config.num_frames, config.spatial_tokens)
    reference = LiteralDownstream(backbone, config.hidden_size, 60).eval()
    with tempfile.TemporaryDirectory() as folder:
        torch.save({"epoch": 0, "state_dict": reference.state_dict()}, f"{folder}/reference.pth.tar")
        model = load_reference_checkpoint(f"{folder}/reference.pth.tar", num_heads=config.num_heads).model
    return reference, model.eval()


def variants(args, reference, model: USDRL, clips: torch.Tensor) -> dict:
    """name -> a call that encodes ``clips`` once."""
    def encode(dtype, target=model):
        return lambda: target.encode(clips, batch_size=len(clips), dtype=dtype, show_progress_bar=False)

    def run_reference():
        with torch.inference_mode():
            return reference.features(clips)

    start = time.perf_counter()
    quantized = model.quantize()
    logger.info("model.quantize(): %.1f s", time.perf_counter() - start)
    calls = {"reference fp32": run_reference, "fp32": encode(None), "auto": encode("auto"),
             "bf16": encode("bf16"), "int8": encode(None, quantized)}
    if "onnx" not in args.skip:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="encode-speed-") as folder:  # sessions keep what they loaded
            path = export_onnx(model, f"{folder}/model.onnx").path
            runners = {"onnxruntime fp32": OnnxRuntimeModel(path),
                       "onnxruntime int8": OnnxRuntimeModel(quantize_onnx(path, f"{folder}/model-int8.onnx"))}
        logger.info("exported to ONNX and quantized in %.1f s", time.perf_counter() - start)
        for name, runner in runners.items():
            calls[name] = lambda runner=runner: runner.encode(clips, batch_size=len(clips), show_progress_bar=False)
    return calls


def bf16_by_size(args) -> None:
    """bf16 autocast against fp32 for small models and batches, and what ``auto`` picks for each (the CPU's
    threshold :data:`usdrl.precision.CPU_BF16_MIN_WORK` comes from this table)."""
    logger.info("bf16 / fp32 by model and batch size (%d interleaved rounds, %s time; auto's choice on this CPU):",
                args.rounds, args.clock)
    for hidden in (128, 256, 512):
        torch.manual_seed(0)
        model = USDRL(USDRLConfig.from_preset("small", hidden_size=hidden, num_heads=4)).eval()
        for batch in (1, 2, 4):
            clips = torch.randn(batch, *model.config.input_shape, generator=torch.Generator().manual_seed(1))
            calls = {dtype: lambda dtype=dtype, model=model, clips=clips, batch=batch: model.encode(
                clips, batch_size=batch, dtype=dtype, show_progress_bar=False) for dtype in ("fp32", "bf16")}
            times = interleaved_times(calls, args.rounds, warmup=2, clock=args.clock)
            auto = resolve_precision("auto", "cpu", work=model.call_work(batch)).name
            logger.info("  hidden %4d, %d clip(s): bf16 %.2fx / %.2fx fp32; auto: %s", hidden, batch,
                        *speedup(times, "bf16", "fp32"), auto)


def time_compiled(model: USDRL, clips: torch.Tensor, rounds: int, clock: str) -> None:
    """fp32 ``encode`` with the encoder compiled by inductor with weight freezing (first call compiles)."""
    import copy

    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compiled = copy.deepcopy(model)
    compiled.encoder.compile()
    start = time.perf_counter()
    compiled.encode(clips, batch_size=len(clips), show_progress_bar=False)
    logger.info("compiled in %.0f s", time.perf_counter() - start)
    times = interleaved_times({"fp32": lambda: model.encode(clips, batch_size=len(clips), show_progress_bar=False),
                               "compiled": lambda: compiled.encode(clips, batch_size=len(clips),
                                                                   show_progress_bar=False)}, rounds, clock=clock)
    logger.info("fp32 compiled / fp32 eager: %.2fx (median of rounds), %.2fx (best rounds)",
                *speedup(times, "compiled", "fp32"))


def agreement(args) -> None:
    """Top-1 of the embedded model's clip head and embedding cosine of each path against fp32, held-out clips."""
    model = USDRL.from_pretrained("usdrl-synthetic-small")
    drawn = make_clips(args.agreement_clips, seed=7)
    frames = model.config.num_frames
    clips = torch.from_numpy(np.stack([to_model_input(c, frames, length=n)
                                       for c, n in zip(drawn.data, drawn.lengths, strict=True)]))
    quantized = model.quantize()
    head = model.head.eval()

    def outputs(encoder_model, dtype=None):
        embeddings = encoder_model.encode(clips, dtype=dtype, show_progress_bar=False)
        with torch.inference_mode():
            return embeddings, head(embeddings).argmax(-1)

    fp32, fp32_top1 = outputs(model)
    paths = {"auto": outputs(model, "auto"), "bf16": outputs(model, "bf16"), "int8": outputs(quantized)}
    if "onnx" not in args.skip:
        for name, int8 in (("onnxruntime fp32", False), ("onnxruntime int8", True)):
            embeddings = onnxruntime_model(model, int8=int8).encode(clips, show_progress_bar=False)
            with torch.inference_mode():
                paths[name] = (embeddings, head(embeddings).argmax(-1))
    logger.info("agreement with fp32 on %d held-out synthetic clips (usdrl-synthetic-small, its clip head; "
                "fp32 top-1 accuracy %.1f%%):", len(clips),
                100 * float((fp32_top1.numpy() == drawn.labels).mean()))
    for name, (embeddings, top1) in paths.items():
        cosine = torch.nn.functional.cosine_similarity(embeddings, fp32, dim=1)
        logger.info("  %-17s top-1 agreement %5.1f%%, embedding cosine min %.5f / mean %.5f", name,
                    100 * float((top1 == fp32_top1).float().mean()), float(cosine.min()), float(cosine.mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base", help="model size for the speed part (default: base)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per timed call (default: 8)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default: 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default: 1)")
    parser.add_argument("--agreement-clips", type=int, default=580, help="held-out clips (default: 580)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["onnx", "agreement", "speed"],
                        help="parts to leave out")
    parser.add_argument("--sizes", action="store_true",
                        help="also time bf16 against fp32 for small models and batches (auto's CPU threshold)")
    parser.add_argument("--compile", action="store_true", help="also time fp32 with the encoder compiled")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu (default): this process's CPU time, steady on a machine shared with other "
                             "jobs; wall: elapsed time (what a user waits, on a machine to itself)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup_logging()
    logger.info("dtype='auto' resolves to %s on the CPU here", resolve_precision("auto", "cpu").name)

    if "speed" not in args.skip:
        config = USDRLConfig.from_preset(args.preset)
        reference, model = reference_pair(config)
        clips = torch.randn(args.batch_size, *config.input_shape, generator=torch.Generator().manual_seed(1))
        calls = variants(args, reference, model, clips)
        times = interleaved_times(calls, args.rounds, clock=args.clock)
        logger.info("%s config (hidden %d), batch %d, %d thread(s), %d interleaved rounds, %s time:", args.preset,
                    config.hidden_size, args.batch_size, args.threads, args.rounds, args.clock)
        logger.info("  %-17s %9s  %s", "", f"clips/{args.clock}-s", "x fp32: median of rounds / best rounds")
        for name in calls:
            logger.info("  %-17s %9.1f  %.2fx / %.2fx", name, args.batch_size / min(times[name]),
                        *speedup(times, name, "fp32"))
        targets = [("fp32 eager / reference", speedup(times, "fp32", "reference fp32"), 1.10),
                   ("auto / fp32", speedup(times, "auto", "fp32"), 1.0),
                   ("int8 / fp32", speedup(times, "int8", "fp32"), 2.0)]
        if "onnx" not in args.skip:
            targets.append(("onnxruntime int8 / fp32", speedup(times, "onnxruntime int8", "fp32"), 2.0))
        for name, (median, best), target in targets:
            if name == "auto / fp32" and resolve_precision("auto", "cpu").name == "fp32":
                verdict = "auto is fp32 here: the same computation, the difference is noise"
            elif min(median, best) >= target:
                verdict = "reached"
            else:
                verdict = "NOT reached" if max(median, best) < target else "reached by one measure only"
            logger.info("target %-24s %.2fx / %.2fx (>= %.2fx: %s)", name, median, best, target, verdict)
        if args.compile:
            time_compiled(model, clips, args.rounds, args.clock)
    if args.sizes:
        bf16_by_size(args)
    if "agreement" not in args.skip:
        agreement(args)


if __name__ == "__main__":
    main()
