import subprocess
import sys

import astronn_gaiacal


def test_version_and_help():
    res = subprocess.run([sys.executable, "-m", "astronn_gaiacal", "--version"], capture_output=True, text=True)
    assert res.returncode == 0
    assert res.stdout.strip() == f"astronn-gaiacal {astronn_gaiacal.__version__}"
    res = subprocess.run([sys.executable, "-m", "astronn_gaiacal", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "usage: astronn-gaiacal" in res.stdout
