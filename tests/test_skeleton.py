import pytest
import torch

from usdrl import COCO17, NTU25, UAV17, ConfigError, SkeletonLayout, get_layout, list_layouts, register_layout
from usdrl.skeleton import apply_modality, to_bone, to_motion


def test_registered_layouts():
    assert {"ntu25", "coco17", "uav17"} <= set(list_layouts())
    assert get_layout("ntu25") is NTU25 and NTU25.num_joints == 25 and COCO17.num_joints == 17
    assert NTU25.joint_names[1] == "spine_mid" and NTU25.joint_names[20] == "spine_shoulder"
    assert (4, 8) in NTU25.flip_pairs and (5, 6) in UAV17.flip_pairs
    assert len(NTU25.edges) == 24 and len(UAV17.edges) == 18


def test_flip_pairs_swap_left_and_right_names():
    for layout in (NTU25, COCO17):
        for a, b in layout.flip_pairs:
            left, right = sorted([layout.joint_names[a], layout.joint_names[b]])
            assert left.replace("left", "X") == right.replace("right", "X")


def test_motion_is_forward_difference_with_zero_last_frame():
    x = torch.tensor([0.0, 1.0, 3.0, 6.0]).reshape(1, 4, 1, 1)  # (C, T, V, M)
    assert to_motion(x).flatten().tolist() == [1.0, 2.0, 3.0, 0.0]


def test_ntu_bones_hand_worked():
    x = torch.zeros(3, 1, 25, 1)
    x[:, 0, :, 0] = torch.arange(25.0)  # joint v sits at (v, v, v)
    bone = to_bone(x, NTU25)[0, 0, :, 0]
    # joint 1 (1-based) -> parent 2; 21 is its own parent; 22 -> 23; 23 -> 8 (1-based)
    assert bone[0] == 0 - 1 and bone[20] == 0 and bone[21] == 21 - 22 and bone[22] == 22 - 7
    assert bone[3] == 3 - 2 and bone[24] == 24 - 11


def test_coco_bones_follow_the_tree_rooted_at_the_nose():
    x = torch.randn(2, 5, 17, 2)
    bone = to_bone(x, COCO17)
    assert torch.equal(bone[:, :, 0], torch.zeros_like(bone[:, :, 0]))
    assert torch.equal(bone[:, :, 9], x[:, :, 9] - x[:, :, 7])  # left wrist - left elbow


def test_apply_modality_works_on_batches_and_refuses_unknown_names():
    x = torch.randn(4, 3, 8, 25, 2)
    assert torch.equal(apply_modality(x, "joint", NTU25), x)
    assert torch.equal(apply_modality(x, "motion", NTU25)[1], to_motion(x[1]))
    assert torch.equal(apply_modality(x, "bone", NTU25)[2], to_bone(x[2], NTU25))
    with pytest.raises(ConfigError, match="unknown modality"):
        apply_modality(x, "velocity", NTU25)
    with pytest.raises(ConfigError, match="17 joints, the input has 25"):
        to_bone(x, COCO17)


def test_custom_layouts_can_be_registered_and_are_validated():
    tri = SkeletonLayout("test-tri", ("a", "b", "c"), parents=(0, 0, 1), edges=((0, 1), (1, 2)), flip_pairs=(),
                         center_joint=0)
    register_layout(tri)
    assert get_layout("test-tri").num_joints == 3
    with pytest.raises(ConfigError, match="already registered"):
        register_layout(tri)
    with pytest.raises(ConfigError, match=r"joint indices \[5\]"):
        SkeletonLayout("bad", ("a", "b"), parents=(0, 5), edges=(), flip_pairs=(), center_joint=0)
