import json

import pytest

from usdrl import ConfigError, USDRLConfig


def test_defaults_are_the_reference_ntu_model():
    c = USDRLConfig()
    assert (c.layout, c.num_joints, c.num_persons, c.in_channels, c.num_frames) == ("ntu25", 25, 2, 3, 64)
    assert (c.hidden_size, c.num_heads, c.num_layers, c.mlp_ratio, c.alpha, c.gap) == (1024, 1, 2, 2.0, 0.5, 4)
    assert (c.temporal_tokens, c.spatial_tokens, c.temporal_input_dim, c.spatial_input_dim) == (64, 50, 150, 192)
    assert c.num_features == 2048 and c.num_dense_features == 2048 and c.input_shape == (3, 64, 25, 2)


@pytest.mark.parametrize("layout,joints", [("coco17", 17), ("uav17", 17)])
def test_sizes_derive_from_layout_and_frames(layout, joints):
    c = USDRLConfig(layout=layout, num_frames=48, num_persons=1, in_channels=2)
    assert c.num_joints == joints
    assert (c.temporal_tokens, c.spatial_tokens) == (48, joints)
    assert (c.temporal_input_dim, c.spatial_input_dim) == (joints * 2, 96)


def test_sttr_and_causal_derived_values():
    c = USDRLConfig(encoder="sttr", causal=True, hidden_size=64, num_heads=2)
    assert c.mlp_ratio == 1.0 and c.mlp_hidden_size == 64
    assert c.num_dense_features == 64


def test_presets():
    assert USDRLConfig.from_preset("base") == USDRLConfig()
    tiny = USDRLConfig.from_preset("tiny", num_classes=3)
    assert tiny.hidden_size == 64 and tiny.num_classes == 3
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        USDRLConfig.from_preset("huge")


def test_json_round_trip():
    c = USDRLConfig(layout="uav17", num_classes=2, class_names=["a", "b"], dataset="uav", protocol="csv1")
    again = USDRLConfig.from_dict(json.loads(c.to_json()))
    assert again == c


@pytest.mark.parametrize("changes,message", [
    ({"layout": "ntu25", "num_joints": 17}, "layout 'ntu25' has 25 joints"),
    ({"layout": "kinect32"}, "unknown layout 'kinect32'"),
    ({"encoder": "gcn"}, "unknown encoder"),
    ({"modality": "velocity"}, "unknown modality"),
    ({"hidden_size": 100, "num_heads": 3}, "not divisible"),
    ({"num_frames": 0}, "num_frames must be a positive integer"),
    ({"num_classes": -1}, "num_classes must be a non-negative"),
    ({"alpha": 1.5}, "alpha must lie"),
    ({"drop_path": 1.0}, "drop_path must lie"),
    ({"num_classes": 3, "class_names": ["a"]}, "class_names has 1 names"),
])
def test_inconsistent_configs_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        USDRLConfig(**changes)


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match=r"unknown config keys \['hiden_size'\]"):
        USDRLConfig.from_dict({"hiden_size": 12})
