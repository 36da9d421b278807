"""Cross-format alignment while a universal model trains with labels (``train_detector(..., alignment=...)``)."""

import json

import numpy as np
import pytest
import torch

from usdrl import USDRL, ConfigError, InputError, USDRLConfig
from usdrl.data.synthetic import make_clips
from usdrl.engine import RunOptions, TrainingRun, derived_seed
from usdrl.tasks.detection import train_detector
from usdrl.tasks.finetune import FinetuneConfig
from usdrl.train.augment import AugmentConfig
from usdrl.train.cross_format import CrossFormatConfig, FormatAlignment
from usdrl.train.losses import info_nce_loss

FRAMES = 16
STILL = CrossFormatConfig(formats=["ntu25"], max_yaw_degrees=0.0, jitter=0.0, low_score_rate=0.0, max_drop_rate=0.0,
                          max_occlusion_rate=0.0)
WHOLE = AugmentConfig(output_frames=FRAMES, min_crop_ratio=1.0, min_crop_length=8, corruption_prob=0.0,
                      shear_range=0.0)


@pytest.fixture(scope="module")
def clips():
    return make_clips(6, seed=7, num_frames=20, noise=0.0)


def alignment(clips, **options) -> FormatAlignment:
    settings = {"batch_size": 4, "augment": AugmentConfig(output_frames=FRAMES, min_crop_length=8), **options}
    return FormatAlignment(clips.data, clips.lengths, **settings)


def universal_model() -> USDRL:
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", layout="universal", in_channels=6, num_frames=FRAMES, drop_path=0.0))


def windows(n: int = 4) -> torch.utils.data.TensorDataset:
    """Universal inputs ``(6, 16, 30, 2)`` with frame labels of 3 classes."""
    rng = np.random.default_rng(0)
    return torch.utils.data.TensorDataset(torch.from_numpy(rng.standard_normal((n, 6, FRAMES, 30, 2), np.float32)),
                                          torch.from_numpy(rng.integers(0, 3, (n, FRAMES))))


def test_the_views_are_whole_clips_drawn_from_the_seed(clips):
    """Without noise, camera turn, shear or crop, and in NTU-25 only, the two renderings of a clip are the same
    universal input: the pair is one clip, and the clips and draws follow the seed."""
    still = alignment(clips, cross_format=STILL, augment=WHOLE)
    views = still.views(5, "cpu")
    assert views.shape == (2, 4, 6, FRAMES, 30, 2) and views.dtype == torch.float32
    assert torch.equal(views[0], views[1]) and views[0].abs().sum() > 0
    assert torch.equal(views, still.views(5, "cpu")) and not torch.equal(views, still.views(6, "cpu"))
    rendered = alignment(clips).views(5, "cpu")                         # the default renderings: not the same
    assert rendered.shape == views.shape and not torch.equal(rendered[0], rendered[1])
    three = alignment(clips, num_views=3, batch_size=2).views(0, "cpu")
    assert three.shape == (3, 2, 6, FRAMES, 30, 2)


def test_defaults_loss_and_recorded_settings(clips):
    default = FormatAlignment(clips.data)
    assert (default.weight, default.temperature, default.batch_size, default.num_views) == (1.0, 0.1, 128, 2)
    assert default.augment == AugmentConfig(min_crop_ratio=1.0, corruption_prob=0.0, shear_range=0.1)
    assert default.cross_format == CrossFormatConfig()
    assert torch.equal(default.lengths, torch.full((6,), 20))
    embeddings = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    chosen = alignment(clips, temperature=0.3)
    assert chosen.loss(embeddings).item() == pytest.approx(info_nce_loss(embeddings, 0.3).item(), rel=1e-6)
    recorded = chosen.to_dict()
    assert json.loads(json.dumps(recorded)) == recorded
    assert {k: recorded[k] for k in ("num_clips", "weight", "temperature", "batch_size", "num_views")} == {
        "num_clips": 6, "weight": 1.0, "temperature": 0.3, "batch_size": 4, "num_views": 2}
    assert recorded["cross_format"] == CrossFormatConfig().to_dict() and recorded["augment"]["output_frames"] == FRAMES


def test_bad_settings_are_refused(clips):
    with pytest.raises(InputError, match=r"NTU-25 clips \(N, 3, T, 25, M\) to render, got \(6, 3, 20, 17, 2\)"):
        FormatAlignment(clips.data[:, :, :, :17])
    with pytest.raises(InputError, match=r"lengths must have shape \(6,\), got \(5,\)"):
        FormatAlignment(clips.data, clips.lengths[:5])
    for bad in ({"weight": -1.0}, {"temperature": 0.0}, {"batch_size": 1}, {"num_views": 1}):
        with pytest.raises(ConfigError, match="need weight >= 0, temperature > 0, batch_size >= 2"):
            FormatAlignment(clips.data, **bad)


def test_training_adds_the_logged_term_and_records_its_settings(clips, tmp_path):
    """One step from known weights: the logged alignment term is the InfoNCE of the model's embeddings of the
    step's views (drawn from the run's seed, step 0, rank 0), and the logged loss includes it."""
    model, aligned = universal_model(), alignment(clips)
    config = FinetuneConfig(epochs=1, batch_size=4, lr=0.0, warmup_epochs=0)
    views = aligned.views(derived_seed(config.seed, 0, 0), "cpu")
    model.train()
    with torch.no_grad():
        expected = info_nce_loss(model.forward_head(model.forward_features(views.flatten(0, 1)), pre_logits=True)
                                 .unflatten(0, (2, 4)), 0.1).item()
    plain = train_detector(universal_model(), windows(), num_classes=3, config=config)
    losses = train_detector(model, windows(), num_classes=3, config=config, alignment=aligned,
                            run=RunOptions(tmp_path / "run", show_progress_bar=False))
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["alignment"] == pytest.approx(expected, rel=1e-5)
    assert losses[0] == pytest.approx(plain[0] + expected, rel=1e-5) and record["loss"] == pytest.approx(losses[0])
    checkpoint = torch.load(tmp_path / "run" / "checkpoint_0001.pt", weights_only=False)
    assert aligned.to_dict() in [value.get("alignment") for value in checkpoint.values() if isinstance(value, dict)]


def test_the_term_changes_training_and_an_interrupted_run_resumes_alike(clips, tmp_path, monkeypatch):
    config = FinetuneConfig(epochs=2, batch_size=2, lr=1e-3, warmup_epochs=0)
    whole = universal_model()
    train_detector(whole, windows(), num_classes=3, config=config, alignment=alignment(clips),
                   run=RunOptions(tmp_path / "straight", show_progress_bar=False))
    plain = universal_model()
    train_detector(plain, windows(), num_classes=3, config=config)
    assert any(not torch.equal(a, b) for a, b in zip(whole.encoder.parameters(), plain.encoder.parameters(),
                                                     strict=True))

    log = TrainingRun.log

    def interrupted_log(self, record):
        log(self, record)
        if self.epoch == 1:  # the second epoch's first step is logged: Ctrl-C
            raise KeyboardInterrupt

    run = tmp_path / "run"
    monkeypatch.setattr(TrainingRun, "log", interrupted_log)
    with pytest.raises(KeyboardInterrupt):
        train_detector(universal_model(), windows(), num_classes=3, config=config, alignment=alignment(clips),
                       run=RunOptions(run, show_progress_bar=False))
    monkeypatch.setattr(TrainingRun, "log", log)
    resumed = universal_model()
    train_detector(resumed, windows(), num_classes=3, config=config, alignment=alignment(clips),
                   run=RunOptions(run, resume=True, show_progress_bar=False))
    assert (run / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    with pytest.raises(ConfigError, match="alignment"):
        train_detector(universal_model(), windows(), num_classes=3, config=config,
                       alignment=alignment(clips, temperature=0.5), run=RunOptions(run, resume=True))


def test_alignment_needs_a_universal_model(clips):
    model = USDRL(USDRLConfig.from_preset("tiny", num_frames=FRAMES))
    with pytest.raises(ConfigError, match="universal"):
        train_detector(model, windows(), num_classes=3, config=FinetuneConfig(epochs=1), alignment=alignment(clips))
