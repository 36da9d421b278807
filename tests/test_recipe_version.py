"""Prepared datasets carry the recipe version; an older 3D one warns once and names the command that remakes it."""

import json
import logging
import shlex

from data_helpers import prepare_synthetic

from usdrl.cli import main
from usdrl.data.prepared import SkeletonDataset, read_manifest

OLD_RECIPE = "prepared with recipe version 1"


def _drop_recipe_version(folder):
    file = folder / "manifest.json"
    manifest = json.loads(file.read_text())
    del manifest["recipe_version"]
    file.write_text(json.dumps(manifest))


def test_old_prepared_dataset_warns_once_with_the_command_that_remakes_it(tmp_path, caplog):
    _, prepared = prepare_synthetic(tmp_path, "ntu60", 4)
    with caplog.at_level(logging.WARNING, logger="usdrl.data.prepared"):
        assert read_manifest(prepared)["recipe_version"] == 2
    assert OLD_RECIPE not in caplog.text

    _drop_recipe_version(prepared)  # as usdrl wrote it before the view alignment was fixed
    with caplog.at_level(logging.WARNING, logger="usdrl.data.prepared"):
        SkeletonDataset(prepared, "train")
        SkeletonDataset(prepared, "test")
    warnings = [r.getMessage() for r in caplog.records if OLD_RECIPE in r.getMessage()]
    assert len(warnings) == 1
    command = warnings[0].split("Remake it with: ")[1]
    assert command.startswith("usdrl prepare ntu60 ") and command.endswith("--benchmark xsub --overwrite")

    assert main(shlex.split(command)[1:]) == 0  # the named command remakes it at the current version
    assert read_manifest(prepared)["recipe_version"] == 2
