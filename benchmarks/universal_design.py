"""Which universal input: the canonical joint set (shipped) or joint-identity tokens, a format-independent frame input.

Usage: python benchmarks/universal_design.py [--minutes 15] [--hidden 64] [--clips 1024] [--threads 1] [--json FILE]

Issue #17 offered two designs for a layout-agnostic DSTE input. Both read the same universal
clip (``usdrl.universal``: 30 canonical joints x 6 channels, absent joints all zero) and differ
in how a stream turns it into tokens:

* ``canonical`` (shipped, ``layout="universal"``): the temporal stream's token is the frame
  flattened, ``M * 30 * 6`` numbers where a joint's meaning is its place; the spatial stream's
  token is a joint's trajectory with a learned position encoding per joint.
* ``joint-set``: the temporal stream's token is built joint by joint, each present joint
  embedded on its own plus a learned identity embedding of its canonical name and person, ReLU,
  then averaged over the present joints (a DeepSets pooling: the same computation whatever
  joints a format has) and mapped by LayerNorm and a linear layer; the spatial stream's tokens
  of absent joints are zeroed after embedding, so such a token is only its identity (the
  position encoding).

Each design is pretrained for the same minutes on the same cross-format views
(:class:`usdrl.train.cross_format.CrossFormatPretrainer`, one run after the other in this process),
then measured with ``universal_synthetic.py``'s protocol: cross-format retrieval, a linear probe
per format, zero-shot NTU-25 -> COCO-17, the COCO-17 probe with joints dropped, and encode speed.
"""

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import best_time, pretrain_within, start_run
from einops import rearrange
from torch import nn
from universal_synthetic import add_pretraining_arguments, benchmark_clips, evaluate, rendered, universal_config

from usdrl import USDRL, USDRLConfig
from usdrl.precision import machine_info
from usdrl.train.cross_format import CrossFormatPretrainer
from usdrl.universal import IN_CHANNELS, UNIVERSAL_JOINTS

logger = logging.getLogger("universal_design")

class JointSetEmbedding(nn.Module):
    """Frame tokens ``(n, t, m*v*c)`` to ``(n, t, d)``, joint by joint: ``LN-linear(mean_j relu(W x_j + e_j))``.

    ``x_j`` is joint ``j``'s ``c`` channels in a frame, ``e_j`` a learned embedding of its identity
    (canonical joint and person, ``(m, v, width)``); the mean runs over the joints present in that
    frame (any channel non-zero), so a frame's token does not depend on where absent joints would be.
    """

    def __init__(self, persons: int, joints: int, channels: int, dim: int, width: int):
        super().__init__()
        self.persons, self.joints = persons, joints
        self.joint = nn.Linear(channels, width)
        self.identity = nn.Parameter(torch.empty(persons, joints, width))
        nn.init.trunc_normal_(self.identity, std=0.02)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = rearrange(tokens, "n t (m v c) -> n t m v c", m=self.persons, v=self.joints)
        present = (x != 0).any(-1, keepdim=True).to(x.dtype)                     # (n, t, m, v, 1)
        joints = F.relu(self.joint(x) + self.identity) * present
        pooled = joints.sum((2, 3)) / present.sum((2, 3)).clamp_min(1.0)
        return self.out(pooled)


class PresentTokens(nn.Module):
    """The spatial stream's embedding with the tokens of absent joints (all-zero trajectories) zeroed:
    ``(n, l, t*c)`` to ``(n, l, d)``."""

    def __init__(self, embed: nn.Module):
        super().__init__()
        self.embed = embed

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens) * (tokens != 0).any(-1, keepdim=True).to(tokens.dtype)


def joint_set_model(config: USDRLConfig) -> USDRL:
    """A universal USDRL whose streams read the clip as the ``joint-set`` design (module docstring)."""
    model = USDRL(config)
    encoder = model.encoder
    encoder.temporal.embed = JointSetEmbedding(config.num_persons, len(UNIVERSAL_JOINTS), IN_CHANNELS,
                                               config.hidden_size, config.hidden_size)
    encoder.spatial.embed = PresentTokens(encoder.spatial.embed)
    return model


class JointSetPretrainer(CrossFormatPretrainer):
    """:class:`CrossFormatPretrainer` of the ``joint-set`` design."""

    def _new_encoder(self, model_config: USDRLConfig) -> USDRL:
        return joint_set_model(model_config)


#: The designs compared, by the pretrainer that builds each.
DESIGNS = {"canonical": CrossFormatPretrainer, "joint-set": JointSetPretrainer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pretraining_arguments(parser, hidden=64)
    args = parser.parse_args()
    start_run(args)
    out = args.out or tempfile.mkdtemp(prefix="usdrl-universal-design-")
    logger.info("(the machine may be shared with other jobs: timings are noisy)")

    config = universal_config(args.hidden)
    unlabelled, eval_clips, probe_train, probe_test = benchmark_clips(args)
    speed_input = torch.from_numpy(rendered(probe_test, "coco17", 40)[:64])

    figures = {}
    for design, trainer in DESIGNS.items():
        started = time.perf_counter()
        model, epochs, epoch_seconds = pretrain_within(args.minutes, config, unlabelled.data, unlabelled.lengths,
                                                       f"{out}/{design}", batch_size=args.batch_size, lr=args.lr,
                                                       trainer=trainer)
        minutes = (time.perf_counter() - started) / 60
        logger.info("%s: %d epochs of %.0f s, %.1f min", design, epochs, epoch_seconds, minutes)
        model.eval()
        figures[design] = {"measured": evaluate(model, eval_clips, probe_train, probe_test), "epochs": epochs,
                           "minutes": minutes, "parameters": sum(p.numel() for p in model.encoder.parameters()),
                           "encode clips/s": len(speed_input) / best_time(
                               lambda m=model: m.encode(speed_input, show_progress_bar=False), repeats=3)}

    logger.info("\n| figure | %s |\n|---|---|---|", " | ".join(DESIGNS))
    for row in figures["canonical"]["measured"]:
        logger.info("| %s | %s |", row, " | ".join(f"{100 * figures[d]['measured'][row]:.1f}%" for d in DESIGNS))
    for row in ("epochs", "minutes", "parameters", "encode clips/s"):
        logger.info("| %s | %s |", row, " | ".join(f"{figures[d][row]:.4g}" for d in DESIGNS))
    figures["run"] = {"hidden": args.hidden, "clips": args.clips, "minutes each": args.minutes,
                      "machine": machine_info().summary()}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
