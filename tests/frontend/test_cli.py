"""``pmtl ui``: registered on the ``pmtl`` command line, runs Streamlit headless."""

from __future__ import annotations

import subprocess
import sys

from frontend.cli import APP, streamlit_command


def test_streamlit_command_is_headless_without_telemetry():
    cmd = streamlit_command("0.0.0.0", 8601)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert (flags["--server.address"], flags["--server.port"]) == ("0.0.0.0", "8601")
    assert APP.name == "streamlit_app.py" and APP.is_file()


def test_pmtl_ui_is_a_registered_command():
    done = subprocess.run(
        [sys.executable, "-m", "pmtl_core.cli", "ui", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--api-url" in done.stdout and "--port" in done.stdout
    assert "unavailable" not in done.stderr  # the entry point imports cleanly
