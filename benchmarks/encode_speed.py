"""`encode` throughput of the reference-size (`base`) USDRL on NTU input, against the matmul peak.

Usage: python benchmarks/encode_speed.py [--batch-size 64] [--batches 3] [--device cpu] [--compile]

Prints, for fp32 and bf16: clips/s, achieved GFLOP/s (FLOPs counted by torch's flop
counter: matrix products only, 2 per multiply-add) and the fraction of the machine's
matmul peak measured in the same process; and the top-1 agreement of bf16 with fp32
on a classification head fitted (least squares) to the fp32 features of synthetic clips.
With ``--compile`` it also times fp32 after ``model.encoder.compile()`` with inductor's weight
freezing (``torch._inductor.config.freezing = True``), the opt-in path that fuses the
element-wise work eager PyTorch runs separately.
"""

import argparse
import logging
import time

import torch
from _common import best_time, matmul_peak
from torch.utils.flop_counter import FlopCounterMode

from usdrl import USDRL, USDRLConfig

logger = logging.getLogger("encode_speed")


def flops_per_clip(model: USDRL) -> float:
    x = torch.randn(1, *model.config.input_shape, device=model._device())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.encoder(x)
    return counter.get_total_flops()


def smooth_clips(n: int, config: USDRLConfig, seed: int) -> torch.Tensor:
    """Smooth random trajectories (a stand-in for skeletons; real skeletons are smooth in time)."""
    g = torch.Generator().manual_seed(seed)
    knots = torch.randn(n, config.in_channels, 8, config.num_joints, config.num_persons, generator=g)
    return torch.nn.functional.interpolate(
        knots.flatten(3).transpose(2, 3).reshape(-1, 1, 8), size=config.num_frames, mode="linear",
        align_corners=True).reshape(n, config.in_channels, config.num_joints * config.num_persons,
                                    config.num_frames).transpose(2, 3).reshape(n, *config.input_shape)


def time_compiled(model: USDRL, clips: torch.Tensor, args, flops: float, peak: float) -> None:
    """fp32 ``encode`` with the encoder compiled by inductor with weight freezing (first call compiles)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    eager = model.encode(clips[: args.batch_size], batch_size=args.batch_size, show_progress_bar=False)
    model.encoder.compile()
    start = time.perf_counter()
    compiled = model.encode(clips[: args.batch_size], batch_size=args.batch_size, show_progress_bar=False)
    logger.info("compiled in %.0f s; max |compiled - eager| / max |eager| = %.1e", time.perf_counter() - start,
                float((compiled - eager).abs().max() / eager.abs().max()))
    seconds = best_time(lambda: model.encode(clips, batch_size=args.batch_size, show_progress_bar=False),
                        repeats=args.repeats)
    achieved = len(clips) / seconds * flops / 1e9
    logger.info("fp32 compiled: %.1f clips/s, %.0f GFLOP/s = %.0f%% of the fp32 matmul peak", len(clips) / seconds,
                achieved, 100 * achieved / peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=3, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--compile", action="store_true", help="also time fp32 with the encoder compiled")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset(args.preset)).to(args.device).eval()
    clips = smooth_clips(args.batch_size * args.batches, model.config, seed=1).to(args.device)
    flops = flops_per_clip(model)
    peaks = {"fp32": matmul_peak(torch.float32, args.device), "bf16": matmul_peak(torch.bfloat16, args.device)}
    logger.info("device %s, %d threads; %s config: %.2f GFLOP per clip", args.device, torch.get_num_threads(),
                args.preset, flops / 1e9)
    rates = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        seconds = best_time(lambda dtype=dtype: model.encode(clips, batch_size=args.batch_size, dtype=dtype,
                                                             show_progress_bar=False), repeats=args.repeats)
        rates[name] = len(clips) / seconds
        achieved = rates[name] * flops / 1e9
        logger.info("%s: %.1f clips/s, %.0f GFLOP/s = %.0f%% of the %s matmul peak (%.0f GFLOP/s; fp32 peak "
                    "%.0f)", name, rates[name], achieved, 100 * achieved / peaks[name], name, peaks[name],
                    peaks["fp32"])
    logger.info("bf16 / fp32 throughput: %.2fx; fp32 at %.0f%% of the fp32 matmul peak", rates["bf16"] / rates["fp32"],
                100 * rates["fp32"] * flops / 1e9 / peaks["fp32"])
    if args.compile:
        time_compiled(model, clips, args, flops, peaks["fp32"])

    # top-1 agreement on a head fitted (least squares) to fp32 features of half the clips,
    # measured on the other half: 10 classes of smooth random motion
    num_classes, per_class = 10, 26
    prototypes = smooth_clips(num_classes, model.config, seed=2).to(args.device)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    data = prototypes[labels.to(args.device)] + 0.5 * smooth_clips(len(labels), model.config, seed=3).to(args.device)
    fp32 = model.encode(data, batch_size=args.batch_size, show_progress_bar=False)
    bf16 = model.encode(data, batch_size=args.batch_size, dtype=torch.bfloat16, show_progress_bar=False)
    fit, held_out = torch.arange(len(labels)) % 2 == 0, torch.arange(len(labels)) % 2 == 1

    def with_bias(features):
        return torch.cat([features, torch.ones(len(features), 1)], 1)

    head = torch.linalg.lstsq(with_bias(fp32[fit]), torch.nn.functional.one_hot(labels[fit]).float()).solution
    fp32_top1 = (with_bias(fp32[held_out]) @ head).argmax(1)
    bf16_top1 = (with_bias(bf16[held_out]) @ head).argmax(1)
    logger.info("top-1 agreement bf16 vs fp32: %.1f%% of %d held-out clips (fp32 head accuracy %.1f%%)",
                100 * (fp32_top1 == bf16_top1).float().mean(), int(held_out.sum()),
                100 * (fp32_top1 == labels[held_out]).float().mean())


if __name__ == "__main__":
    main()
