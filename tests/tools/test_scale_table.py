"""scripts/scale_table.py: how docs/SCALE.md picks the way a target runs the paper's batch of 128."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("scale_table", ROOT / "scripts" / "scale_table.py")
scale_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale_table)


def sweep(**largest):
    return {"results": {k: {"largest_fitting_batch": v} for k, v in largest.items()}}


def test_accumulation_is_preferred_to_recomputing_the_forward():
    assert scale_table.plan(sweep(none=280, full=1024), devices=8) == ("none", 1)
    assert scale_table.plan(sweep(none=40, full=128), devices=8) == ("none", 4)  # 32 rows a micro-batch
    assert scale_table.plan(sweep(none=35, full=148), devices=1) == ("none", 4)


def test_micro_batches_keep_a_whole_row_per_device():
    assert scale_table.plan(sweep(none=None, full=8), devices=8) == ("full", 16)  # 8 rows = 1 per device
    assert scale_table.plan(sweep(none=4, full=8), devices=8) == ("full", 16)  # none: not one row per device
    assert scale_table.plan(sweep(none=None, full=None), devices=8) is None
    assert scale_table.plan(sweep(full=4), devices=8) is None  # would need half a row per device


def test_an_epoch_of_the_recipe_in_batches():
    paper = scale_table.batches_per_epoch([3000])
    assert paper == {3000: 20_000 // 128}  # every row padded to 30 s; the remainder is dropped
    bucketed = scale_table.batches_per_epoch([500, 1000, 2000, 3000])
    assert sum(bucketed.values()) <= paper[3000] and bucketed[500] >= 10_000 // 128  # text rows → smallest
