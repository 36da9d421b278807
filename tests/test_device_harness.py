"""Every training and inference entry point keeps its tensors where the model is (checked without a GPU).

The model is moved onto a simulated accelerator (:mod:`device_harness`); any operation that
mixes its tensors with host tensors, as a batch or labels left on the CPU would on a GPU, fails.
The real CUDA run is ``test_cuda_end_to_end`` (skipped without a GPU).
"""

import numpy as np
import pytest
import torch
from device_harness import ACCELERATOR, DeviceMixError, SimulatedAccelerator

from usdrl import USDRL, USDRLConfig

CLASSES, FRAME_CLASSES = 3, 4


@pytest.fixture
def accelerator():
    # Tables cached per device by earlier tests were made on the host; the simulated accelerator shares the CPU's
    # device name, so it would take them for host tensors: start without them, as a real GPU run would.
    from usdrl.train.augment import _resize_table

    _resize_table.cache_clear()
    return SimulatedAccelerator()


def tiny_model(**overrides) -> USDRL:
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, **overrides))


def placed(accelerator, model: USDRL) -> USDRL:
    """``model`` moved onto the simulated accelerator."""
    with accelerator:
        model.to("cpu")
    assert all(accelerator.on_device(p) for p in model.parameters())
    return model


def clips(model: USDRL, n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *model.config.input_shape), generator=torch.Generator().manual_seed(seed))


def labelled(model: USDRL, n: int = 8) -> torch.utils.data.TensorDataset:
    return torch.utils.data.TensorDataset(clips(model, n), torch.arange(n) % CLASSES)


def windows(model: USDRL, n: int = 4) -> torch.utils.data.TensorDataset:
    frames = model.config.num_frames
    return torch.utils.data.TensorDataset(clips(model, n), torch.arange(n * frames).view(n, frames) % FRAME_CLASSES)


def test_the_harness_catches_a_host_batch_and_passes_a_moved_one(accelerator):
    layer = torch.nn.Linear(3, 2)
    with accelerator:
        layer.to("cpu")
        batch = torch.randn(4, 3)
        with pytest.raises(DeviceMixError, match="mixes tensors on the accelerator with host tensors"):
            layer(batch)
        out = layer(batch.to("cpu"))
        out.sum().backward()
        torch.optim.SGD(layer.parameters(), lr=0.1).step()
        assert accelerator.on_device(out) and accelerator.on_device(layer.weight.grad)
        assert not accelerator.on_device(out.cpu())
        with pytest.raises(DeviceMixError, match="numpy"):
            out.detach().numpy()
        out + torch.tensor(1.0)  # a 0-d host tensor is allowed, as on CUDA


def test_the_named_accelerator_tells_its_device_from_the_host_and_checks_generators():
    accelerator = SimulatedAccelerator(named=True)
    with accelerator:
        there = torch.randn(4, 3).to(ACCELERATOR)
        assert there.device == ACCELERATOR and accelerator.on_device(there)
        host = torch.zeros(4, 3, device="cpu")   # naming the host is not the accelerator, unlike the default mode
        assert host.device == torch.device("cpu") and not accelerator.on_device(host)
        with pytest.raises(DeviceMixError, match="mixes tensors on the accelerator with host tensors"):
            there + host
        back = there.to("cpu")
        assert not accelerator.on_device(back) and accelerator.on_device(there) and torch.equal(back, there.cpu())
        assert accelerator.on_device(torch.ones(2, device=there.device)) and accelerator.on_device(host.to(there))
        on, off = accelerator.generator(3), torch.Generator().manual_seed(3)
        assert on.device == ACCELERATOR and off.device == torch.device("cpu")
        drawn = torch.rand(5, generator=on, device=on.device)
        assert accelerator.on_device(drawn) and torch.equal(drawn.cpu(), torch.rand(5, generator=off))
        with pytest.raises(DeviceMixError, match="draws on the host with a generator on the accelerator"):
            torch.rand(5, generator=on)   # torch's default device is the host
        with pytest.raises(DeviceMixError, match="draws on the host with a generator on the accelerator"):
            torch.rand(5, generator=on, device="cpu")
        with pytest.raises(DeviceMixError, match="draws on the accelerator with a generator on the host"):
            torch.rand(5, generator=off, device=ACCELERATOR)
        assert not accelerator.on_device(torch.rand(5, generator=off, device="cpu"))
    with pytest.raises(ValueError, match="named=True"):
        SimulatedAccelerator().generator(0)


@pytest.mark.parametrize("causal", [False, True])   # causal: the attention builds its mask where the tokens are
def test_inference_entry_points(accelerator, causal):
    from usdrl.tasks.detection import frame_scores
    from usdrl.tasks.finetune import predict_dataset
    from usdrl.tasks.metrics import topk_accuracy
    from usdrl.tasks.recognition import encode_dataset
    from usdrl.tasks.streaming import StreamingDetector

    model = tiny_model(num_classes=CLASSES, num_frame_classes=FRAME_CLASSES, causal=causal)
    batch = clips(model)
    placed(accelerator, model)
    with accelerator:
        assert accelerator.on_device(model(batch)) and accelerator.on_device(model.forward_frames(batch))
        assert accelerator.on_device(model.forward_head(model.forward_features(batch)))
        for output in (model.encode(batch), model.dense_features(batch), frame_scores(model, batch[0].numpy()),
                       *encode_dataset(model, labelled(model)), *predict_dataset(model, labelled(model))):
            assert not accelerator.on_device(output)  # the helpers hand back host tensors
        topk_accuracy(*predict_dataset(model, labelled(model)), k=(1,))
        stream = StreamingDetector(model)
        outputs = [stream.push(batch[0].numpy()), stream.finish()]
        assert sum(len(output.scores) for output in outputs) == model.config.num_frames


def test_finetune_and_linear_probe(accelerator):
    from usdrl.tasks.finetune import FinetuneConfig, finetune
    from usdrl.tasks.recognition import ProbeConfig, linear_probe

    model = placed(accelerator, tiny_model())
    with accelerator:
        finetune(model, (labelled(model), labelled(model)), num_classes=CLASSES,
                 config=FinetuneConfig(epochs=1, batch_size=4, eval_every=1))
        linear_probe(model, (labelled(model), labelled(model)), num_classes=CLASSES,
                     config=ProbeConfig(epochs=2, batch_size=4, eval_every=1))
    assert all(accelerator.on_device(p) for p in model.parameters())


@pytest.mark.parametrize("recipe", ["library", "reference"])
def test_detection_and_segmentation_training(accelerator, recipe):
    from usdrl.tasks.detection import ReferenceDetectionConfig, train_detector
    from usdrl.tasks.finetune import FinetuneConfig

    model = placed(accelerator, tiny_model())
    config = (ReferenceDetectionConfig(epochs=1, batch_size=2) if recipe == "reference" else
              FinetuneConfig(epochs=1, batch_size=2))
    with accelerator:
        train_detector(model, windows(model), num_classes=FRAME_CLASSES, config=config, smoothing=0.15)
    assert all(accelerator.on_device(p) for p in model.parameters())


def test_detection_training_with_cross_format_alignment():
    """The alignment term renders on the host and trains where the model is (the named accelerator: the
    renderings' crop tables are the host's, cached under ``cpu``)."""
    from usdrl.data.synthetic import make_clips
    from usdrl.tasks.detection import train_detector
    from usdrl.tasks.finetune import FinetuneConfig
    from usdrl.train.augment import AugmentConfig
    from usdrl.train.cross_format import FormatAlignment

    accelerator = SimulatedAccelerator(named=True)
    model = tiny_model(layout="universal", in_channels=6)
    with accelerator:
        model.to(ACCELERATOR)
    unlabelled = make_clips(4, seed=7, num_frames=model.config.num_frames + 4)
    alignment = FormatAlignment(unlabelled.data, unlabelled.lengths, batch_size=2,
                                augment=AugmentConfig(output_frames=model.config.num_frames, min_crop_length=8))
    with accelerator:
        losses = train_detector(model, windows(model), num_classes=FRAME_CLASSES, alignment=alignment,
                                config=FinetuneConfig(epochs=1, batch_size=2))
    assert all(accelerator.on_device(p) for p in model.parameters()) and np.isfinite(losses).all()


def test_pretraining(accelerator, tmp_path):
    from usdrl.train.pretrain import PretrainConfig, Pretrainer

    config = USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1)
    data = np.random.default_rng(0).standard_normal((8, *config.input_shape)).astype(np.float32)
    with accelerator:
        trainer = Pretrainer(config, PretrainConfig(epochs=1, batch_size=4, lr_milestones=[]), data,
                             np.full(8, config.num_frames), tmp_path / "run")
        trainer.fit()
    assert all(accelerator.on_device(p) for p in trainer.module.parameters())


def test_multi_track_streaming_and_universal_encoding(accelerator):
    from usdrl.data.synthetic import make_clips, render_keypoints
    from usdrl.tasks.detection import frame_scores
    from usdrl.tasks.streaming import MultiTrackDetector

    model = placed(accelerator, tiny_model(num_frame_classes=FRAME_CLASSES))
    batch = clips(model, 2)
    universal = placed(accelerator, tiny_model(layout="universal", in_channels=6, num_frames=16,
                                               num_frame_classes=FRAME_CLASSES))
    keypoints = render_keypoints(make_clips(2, seed=1, num_frames=20).data, "coco17")
    with accelerator:
        served = MultiTrackDetector(model)
        outputs = [served.push({track: clip.numpy() for track, clip in enumerate(batch)}), served.finish()]
        assert {track for output in outputs for track in output} == {0, 1}
        assert not accelerator.on_device(universal.encode_keypoints(keypoints, "coco17"))
        # detection from keypoints: each window converted on the host, run where the model is
        assert frame_scores(universal, keypoints[0], stride=8, format="coco17").shape == (20, FRAME_CLASSES)
        served = MultiTrackDetector(universal, format="coco17")
        outputs = [served.push({0: keypoints[0], 1: keypoints[1]}), served.finish()]
        assert sum(len(output[0].scores) for output in outputs) == 20


def test_cross_format_pretraining(accelerator, tmp_path):
    from usdrl.data.synthetic import make_clips
    from usdrl.train.augment import AugmentConfig
    from usdrl.train.cross_format import CrossFormatPretrainer
    from usdrl.train.pretrain import PretrainConfig

    config = USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, layout="universal", in_channels=6,
                                     num_frames=16)
    data = make_clips(4, seed=7, num_frames=20)
    run = PretrainConfig(epochs=1, batch_size=4, num_views=2, lr_milestones=[],
                         augment=AugmentConfig(output_frames=16, min_crop_length=8))
    with accelerator:
        trainer = CrossFormatPretrainer(config, run, data.data, data.lengths, tmp_path / "run",
                                        show_progress_bar=False)
        trainer.fit()
    assert all(accelerator.on_device(p) for p in trainer.module.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_end_to_end(tmp_path):
    from usdrl.engine import RunOptions
    from usdrl.tasks.detection import train_detector
    from usdrl.tasks.finetune import FinetuneConfig, finetune

    model = tiny_model()
    for precision in ("fp32", "bf16", "fp16"):
        run = RunOptions(tmp_path / precision, device="cuda", precision=precision)
        finetune(model, (labelled(model), labelled(model)), num_classes=CLASSES,
                 config=FinetuneConfig(epochs=1, batch_size=4), run=run)
        assert next(model.parameters()).is_cuda
    train_detector(model, windows(model), num_classes=FRAME_CLASSES, config=FinetuneConfig(epochs=1, batch_size=2),
                   run=RunOptions(device="cuda"))
    assert model.encode(clips(model)).device.type == "cpu"
