"""``facestream check-config``: the documented example passes; a bad file names its line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "configs" / "example.yaml"


def check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **env})


def test_the_example_is_valid_and_summarised_without_secrets() -> None:
    result = check(EXAMPLE, CAM_PASSWORD="hunter2", MQTT_PASSWORD="x", FACESTREAM_TOKEN="t")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "camera " in result.stdout
    assert "hunter2" not in result.stdout and "***" in result.stdout
    assert "token required" in result.stdout


def test_a_bad_value_is_one_line_naming_the_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text("cameras:\n  - name: door\n    url: rtsp://cam/1\n    sample_fps: -1\n")
    result = check(config)
    assert result.returncode == 2
    assert f"{config} line 4: cameras[0].sample_fps" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
