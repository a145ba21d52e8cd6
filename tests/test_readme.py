"""The README's first-screen figures are read from a committed results file (issue 44).

docs/results/readme_demo.json holds the figures of the run the README quotes (seed 0 of the timed
150-step demo, docs/DEMO.md). A rerun that changes them must change that file, and then this test
fails until the README's table says the same. Not a format lint: every number is compared.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DEMO = (ROOT / "docs" / "DEMO.md").read_text()
RESULTS = json.loads((ROOT / "docs" / "results" / "readme_demo.json").read_text())

ROWS = {
    "AuRA `hears`": "AuRA hears",
    "AuRA `paper`": "AuRA paper",
    "Whisper tiny.en / cascade": "Whisper tiny.en / cascade",
}
COLUMNS = ["wer", "spoken_qa", "audio_worth"]


def _numbers(cell):
    return [float(x) for x in re.findall(r"[-−]?\d+(?:\.\d+)?", cell.replace("−", "-"))]


def _readme_table():
    block = README.split("<!-- readme-figures: begin -->")[1].split("<!-- readme-figures: end -->")[0]
    rows = {}
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _slug(heading):
    h = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return h.replace(" ", "-")


def test_first_screen_table_matches_results_file():
    rows = _readme_table()
    assert set(rows) == set(ROWS)
    for label, key in ROWS.items():
        system = RESULTS["systems"][key]
        for col, cell in zip(COLUMNS, rows[label]):
            assert _numbers(cell) == [float(v) for v in system.get(col, [])], (label, col, cell)


def test_first_screen_table_is_on_the_first_screen():
    lines = README.splitlines()
    begin = next(i for i, l in enumerate(lines) if "readme-figures: begin" in l)
    assert begin < 40


def test_commands_and_their_times_on_the_first_screen():
    first30 = "\n".join(README.splitlines()[:30])
    assert "bash scripts/setup_env.sh && .venv/bin/aura-jax demo" in first30
    assert RESULTS["suite"]["command"] in first30
    demo = RESULTS["demo_wall_min"]
    assert f"{demo['seed0']} / {demo['seed1']} min" in first30
    suite = RESULTS["suite"]
    assert f"{suite['passed']} passed in {suite['seconds']} s" in first30
    assert first30.count(RESULTS["cpu"]) >= 2


def test_demo_summary_quotes_the_same_run():
    summary = DEMO.split("## Where the evidence stands")[1].split("\n## ")[0]
    for key, recipe in (("AuRA hears", "`hears`, the demo"), ("AuRA paper", "`paper`, the demo")):
        row = next(l for l in summary.splitlines() if l.startswith(f"| {recipe} |"))
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        system = RESULTS["systems"][key]
        assert _numbers(cells[3]) == system["wer"]
        assert _numbers(cells[4]) == [float(v) for v in system["spoken_qa"]]
        assert _numbers(cells[5]) == system["audio_worth"]


def test_links_to_demo_sections_exist():
    anchors = {_slug(l.lstrip("#")) for l in DEMO.splitlines() if l.startswith("#")}
    summary = DEMO.split("## Where the evidence stands")[1].split("\nThe dated log follows")[0]
    links = re.findall(r"\]\(#([^)]+)\)", summary)
    assert len(links) >= 10
    assert set(links) <= anchors, set(links) - anchors
    for anchor in re.findall(r"docs/DEMO\.md#([^)\s]+)", README):
        assert anchor in anchors, anchor
