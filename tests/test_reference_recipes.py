"""The reference releases' recipes, one flag away: pretraining, detection training, the PKU-MMD II
probe's central crop, early prediction's protocol and STTR's missing drop path.

The expected values are typed in from the releases' scripts (the AAAI ``scripts/pretrain.sh`` and
``pretrain.py``; the TPAMI ``scripts/pretrain.sh``, ``scripts/ntu60_xv.sh``, ``pretrain.py``,
``action_detection.py`` and ``options/options_downstream.py``), not read from the library.
"""

import copy
import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_helpers import prepare_synthetic

from usdrl import USDRL, ConfigError, USDRLConfig
from usdrl.cli import main
from usdrl.convert import load_reference_checkpoint
from usdrl.tasks.detection import ReferenceDetectionConfig, train_detector
from usdrl.tasks.early import early_prediction
from usdrl.tasks.recognition import ProbeConfig, encode_dataset, probe_datasets, train_linear_head
from usdrl.train.pretrain import PretrainConfig, latest_checkpoint
from usdrl.train.recipes import RECIPES, get_recipe

# (name, batch, lr, decay epoch, epochs, cross-correlation weight, corruption pool, GPUs of the script)
RELEASE_RUNS = [
    ("aaai-ntu60", 356, 5e-4, 351, 451, 1e-3, None, 2),
    ("aaai-ntu120", 356, 5e-4, 351, 451, 1e-3, None, 2),
    ("aaai-pku2", 512, 5e-4, 801, 1201, 1e-3, None, 2),
    ("tpami-pku2", 512, 5e-4, 801, 1201, 0.0, 17, 2),
    ("tpami-ntu2d", 384, 1e-4, 351, 451, 0.0, 17, 4),
    ("tpami-ntu60-sttr", 356, 1e-4, 351, 451, 0.0, 17, 2),
]


@pytest.mark.parametrize(("name", "batch", "lr", "decay", "epochs", "xcorr", "pool", "gpus"), RELEASE_RUNS)
def test_every_recipe_sets_the_release_values(name, batch, lr, decay, epochs, xcorr, pool, gpus):
    assert get_recipe(name).gpus == gpus
    config = get_recipe(name).pretrain_config()
    assert (config.batch_size, config.lr, config.lr_milestones, config.epochs) == (batch, lr, [decay], epochs)
    assert (config.weight_decay, config.lr_gamma, config.num_views, config.precision) == (1e-5, 0.1, 4, "fp16")
    assert config.learning_rate(decay - 1) == lr and config.learning_rate(decay) == pytest.approx(lr / 10)
    loss = config.loss
    assert (loss.sim_weight, loss.vac_weight, loss.xcorr_weight) == (5, 1, xcorr)
    assert (loss.std_weight, loss.cov_weight) == (5, 1)
    assert (loss.instance_weight, loss.temporal_weight, loss.spatial_weight) == (1, 0.5, 0.5)
    assert (loss.variance_eps, loss.xcorr_off_diagonal) == (1e-4, 0.005)
    augment = config.augment
    assert augment.corruption_pool == pool and augment.corrupted_joints == 15
    assert (augment.min_crop_ratio, augment.max_crop_ratio, augment.output_frames) == (0.1, 1.0, 64)
    assert not (augment.flip_prob or augment.noise_std or augment.temporal_mask_prob or any(augment.rotation_degrees))
    model = USDRLConfig(**get_recipe(name).model)
    assert (model.hidden_size, model.num_heads, model.num_layers, model.num_frames) == (1024, 1, 2, 64)
    assert model.encoder == ("sttr" if "sttr" in name else "dste")


def test_recipes_are_exactly_the_table_and_unknown_names_are_refused():
    assert sorted(RECIPES) == sorted(run[0] for run in RELEASE_RUNS)
    with pytest.raises(ConfigError, match="unknown recipe 'aaai-ntu'; expected one of aaai-ntu60"):
        get_recipe("aaai-ntu")


def test_overrides_change_single_values_and_leave_the_rest():
    recipe = get_recipe("aaai-ntu60")
    config = recipe.pretrain_config({"batch_size": 8, "loss": {"sim_weight": 2.0}, "augment": {"shear_range": 0.5}})
    assert (config.batch_size, config.loss.sim_weight, config.augment.shear_range) == (8, 2.0, 0.5)
    assert (config.loss.xcorr_weight, config.lr, config.augment.corrupted_joints) == (1e-3, 5e-4, 15)
    assert recipe.pretrain_config().batch_size == 356    # the table itself is not changed


def test_the_library_defaults_are_its_own():
    default, reference = PretrainConfig(), get_recipe("aaai-ntu60").pretrain_config()
    assert (default.batch_size, default.precision, default.loss.xcorr_weight) == (256, "fp32", 0.0)
    assert (reference.batch_size, reference.precision, reference.loss.xcorr_weight) == (356, "fp16", 1e-3)


@pytest.fixture(scope="module")
def ntu(tmp_path_factory):
    return prepare_synthetic(tmp_path_factory.mktemp("ntu"), "ntu60", 40)[1]


def test_cli_pretrain_recipe_then_config_file_then_flags(ntu, tmp_path, caplog):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"pretrain": {"loss": {"sim_weight": 4.0}}}))
    base = ["pretrain", "--data", str(ntu), "--preset", "tiny", "--epochs", "1", "--batch-size", "8",
            "--save-every", "1"]
    caplog.set_level(logging.WARNING, logger="usdrl.train.recipes")
    assert main(base + ["--out", str(tmp_path / "aaai"), "--recipe", "aaai-ntu60", "--config", str(settings)]) == 0
    checkpoint = torch.load(latest_checkpoint(tmp_path / "aaai"), weights_only=True)
    config = checkpoint["config"]
    assert (config["epochs"], config["batch_size"]) == (1, 8)                                   # flags
    assert config["loss"]["sim_weight"] == 4.0                                                  # the config file
    assert (config["lr"], config["lr_milestones"], config["weight_decay"]) == (5e-4, [351], 1e-5)   # the recipe
    assert (config["loss"]["xcorr_weight"], config["precision"]) == (1e-3, "fp16")
    assert checkpoint["scaler"]["scale"] > 0      # fp16 trains with a GradScaler (on CPU as on CUDA)
    model = USDRL.from_pretrained(tmp_path / "aaai" / "model").config
    assert (model.hidden_size, model.encoder, model.drop_path) == (64, "dste", 0.1)   # --preset tiny wins
    assert "recipe aaai-ntu60" in model.description
    # one process normalises other batch-norm slices than the release's two GPUs: said, not refused
    assert "recipe aaai-ntu60 ran on 2 GPUs" in caplog.text and "--nproc_per_node=2" in caplog.text
    caplog.clear()

    assert main(base + ["--out", str(tmp_path / "sttr"), "--recipe", "tpami-ntu60-sttr", "--precision", "fp32",
                        "--sync-batchnorm"]) == 0
    config = torch.load(latest_checkpoint(tmp_path / "sttr"), weights_only=True)["config"]
    assert (config["lr"], config["precision"], config["loss"]["xcorr_weight"]) == (1e-4, "fp32", 0.0)
    assert config["sync_batchnorm"] and not get_recipe("tpami-ntu60-sttr").config.sync_batchnorm
    assert config["augment"]["corruption_pool"] == 17
    model = USDRL.from_pretrained(tmp_path / "sttr" / "model").config
    assert (model.encoder, model.drop_path, model.mlp_ratio) == ("sttr", 0.0, 1.0)
    assert not caplog.records        # ntu60 data for an ntu60 recipe

    assert main(base + ["--out", str(tmp_path / "pku"), "--recipe", "aaai-pku2", "--epochs", "1"]) == 0
    assert "recipe aaai-pku2 was made for pkummd2 data, got ntu60" in caplog.text


# ---- STTR: the reference has no drop path ---------------------------------------------------------

def test_sttr_defaults_to_no_drop_path_and_dste_keeps_its_own():
    assert USDRLConfig(encoder="sttr").drop_path == 0.0
    assert USDRLConfig().drop_path == 0.1 and USDRLConfig(encoder="sttr", drop_path=0.2).drop_path == 0.2
    sttr = USDRLConfig.from_preset("tiny", encoder="sttr")
    assert USDRLConfig.from_dict(json.loads(sttr.to_json())) == sttr
    torch.manual_seed(0)
    model = USDRL(sttr).train()                 # train mode: a drop path would make two passes differ
    x = torch.randn(3, *sttr.input_shape)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_a_converted_sttr_checkpoint_agrees_with_a_fresh_sttr_config(tmp_path):
    from reference_impl import LiteralDownstream, LiteralSTTR

    torch.manual_seed(0)
    reference = LiteralDownstream(LiteralSTTR(150, 192, 32, 1, 50), 32, 7)
    torch.save({"epoch": 450, "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}},
               tmp_path / "sttr.pth.tar")
    converted = load_reference_checkpoint(tmp_path / "sttr.pth.tar").model
    sizes = {k: v for k, v in converted.config.to_dict().items() if k not in ("drop_path", "mlp_ratio")}
    assert USDRLConfig(**sizes) == converted.config         # the defaults now say what the checkpoint is
    # in train mode too (as when finetuning) the model computes the reference's maths: no drop path
    converted.train(), reference.train()
    x = torch.randn(3, 3, 64, 25, 2)
    torch.testing.assert_close(converted(x), reference(x), rtol=1e-4, atol=1e-5)


# ---- detection: the TPAMI action_detection.py -------------------------------------------------------

def test_reference_detection_defaults_are_the_release_values():
    config = ReferenceDetectionConfig()
    assert (config.lr, config.momentum, config.weight_decay, config.batch_size, config.epochs) == \
        (0.005, 0.9, 0.0, 512, 150)


def test_reference_detection_is_constant_lr_momentum_sgd_in_eval_mode():
    config = USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, num_frames=8, drop_path=0.5)
    torch.manual_seed(1)
    windows = [(torch.randn(config.input_shape), torch.randint(-1, 4, (config.num_frames,))) for _ in range(6)]
    torch.manual_seed(0)
    start = USDRL(config)
    trained, initial = copy.deepcopy(start), copy.deepcopy(start)
    lr = 0.05
    losses = train_detector(trained, windows, num_classes=4,
                            config=ReferenceDetectionConfig(epochs=3, batch_size=6, lr=lr))
    # the fresh head it starts from: the same call with a zero learning rate changes nothing
    train_detector(initial, windows, num_classes=4, config=ReferenceDetectionConfig(epochs=1, batch_size=6, lr=0.0))
    assert not initial.frame_head.bias.detach().any()
    assert float(initial.frame_head.weight.detach().std()) == pytest.approx(0.01, rel=0.2)

    # by hand: eval mode (drop path 0.5 would otherwise make every step random), heavy-ball momentum 0.9,
    # one constant learning rate for every parameter, cross-entropy ignoring frames labelled -1
    clips, labels = torch.stack([c for c, _ in windows]), torch.stack([y for _, y in windows])
    initial.eval()
    parameters = list(initial.parameters())
    momentum, expected_losses = [None] * len(parameters), []
    for _ in range(3):
        loss = F.cross_entropy(initial.forward_frames(clips).reshape(-1, 4), labels.reshape(-1), ignore_index=-1)
        grads = torch.autograd.grad(loss, parameters)
        expected_losses.append(loss.item())
        with torch.no_grad():
            for i, (parameter, grad) in enumerate(zip(parameters, grads, strict=True)):
                momentum[i] = grad.clone() if momentum[i] is None else 0.9 * momentum[i] + grad
                parameter -= lr * momentum[i]
    assert losses == pytest.approx(expected_losses, rel=1e-5)
    for (name, got), want in zip(trained.named_parameters(), parameters, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def pku1(tmp_path_factory):
    return prepare_synthetic(tmp_path_factory.mktemp("pku1"), "pkummd1", 12)[1]


def test_cli_detect_recipe_reference(pku1, tmp_path, monkeypatch):
    import usdrl.tasks.detection as detection

    seen = []

    def fake_training(model, data, *, config, smoothing, run, **_):
        seen.append((config, smoothing))
        model.reset_frame_classifier(52)   # PKU-MMD I's frame classes, background included

    monkeypatch.setattr(detection, "train_detector", fake_training)
    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1)).save_pretrained(tmp_path / "encoder")
    common = ["detect", str(tmp_path / "encoder"), "--data", str(pku1), "--out", str(tmp_path / "proposals")]
    assert main(common + ["--recipe", "reference"]) == 0
    assert main(common + ["--recipe", "reference", "--train-epochs", "2", "--batch-size", "16"]) == 0
    assert main(common + ["--train-epochs", "2"]) == 0
    (reference, smoothing), (shortened, _), (library, _) = seen
    assert reference == ReferenceDetectionConfig() and smoothing == 0.0
    assert (shortened.epochs, shortened.batch_size, shortened.lr, shortened.momentum) == (2, 16, 0.005, 0.9)
    assert not isinstance(library, ReferenceDetectionConfig)


# ---- the PKU-MMD II probe: a fixed central 50% crop for training ----------------------------------

@pytest.fixture(scope="module")
def ntu_probe(tmp_path_factory):
    return prepare_synthetic(tmp_path_factory.mktemp("probe"), "ntu60", 120)[1]


def resampled(frames: np.ndarray, size: int = 64) -> np.ndarray:
    """``(C, n, V, M)`` frames linearly resampled to ``size`` as the reference does (``F.interpolate``,
    ``align_corners=False``)."""
    c, n, v, m = frames.shape
    series = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 2, 3, 1).reshape(1, c * v * m, n)
    out = F.interpolate(series.double(), size=size, mode="linear", align_corners=False)
    return out.reshape(c, v, m, size).permute(0, 3, 1, 2).numpy()


def test_probe_datasets_crop_the_training_clips_only(ntu_probe):
    train, test = probe_datasets(ntu_probe, num_frames=64, train_crop=0.5)
    for index in (0, 1, 2):
        n = int(train.lengths[index])
        data = np.asarray(train.padded_clips[index])
        begin = int((1 - 0.5) * n // 2)               # the reference: frames [floor((1 - r) n / 2), n - that)
        np.testing.assert_allclose(train[index][0], resampled(data[:, begin:n - begin]), rtol=1e-5, atol=1e-6)
        n = int(test.lengths[index])
        np.testing.assert_allclose(test[index][0], resampled(np.asarray(test.padded_clips[index])[:, :n]),
                                   rtol=1e-5, atol=1e-6)


def test_cli_linear_probe_train_crop(ntu_probe, tmp_path, capsys):
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1))
    model.save_pretrained(tmp_path / "encoder")
    assert main(["linear-probe", str(tmp_path / "encoder"), "--data", str(ntu_probe), "--epochs", "5",
                 "--lr", "0.05", "--train-crop", "0.5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    train, test = probe_datasets(ntu_probe, num_frames=64, train_crop=0.5)
    _, result = train_linear_head(*encode_dataset(model.eval(), train), *encode_dataset(model, test),
                                  train.num_classes, ProbeConfig(lr=0.05, epochs=5))
    assert printed["history"] == [list(row) for row in result.history]


# ---- early prediction: the reference crops training and test clips alike ----------------------------

def test_observed_protocol_trains_a_probe_per_ratio_on_observed_clips(ntu_probe, tmp_path, capsys):
    from usdrl.data import SkeletonDataset

    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1)).eval()
    probe = ProbeConfig(lr=0.05, epochs=10, batch_size=64)
    curve = early_prediction(model, ntu_probe, ratios=(0.3, 1.0), protocol="observed", config=probe)
    for ratio in (0.3, 1.0):
        train, test = (SkeletonDataset(ntu_probe, split, observe_ratio=ratio) for split in ("train", "test"))
        _, expected = train_linear_head(*encode_dataset(model, train), *encode_dataset(model, test),
                                        train.num_classes, probe)
        assert curve.accuracy[ratio] == pytest.approx(expected.best_top1)
    assert model.head is None                  # the encoder is left as it was
    model.save_pretrained(tmp_path / "encoder")
    assert main(["early-prediction", str(tmp_path / "encoder"), "--data", str(ntu_probe), "--protocol", "observed",
                 "--ratio", "0.3", "--epochs", "10", "--lr", "0.05", "--batch-size", "64", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"]["0.3"] == pytest.approx(curve.accuracy[0.3]) and printed["protocol"] == "observed"
    with pytest.raises(ConfigError, match="unknown protocol"):
        early_prediction(model, ntu_probe, protocol="prefix")
