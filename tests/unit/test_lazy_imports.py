"""azure-ai-ml is imported only when a ParallelJob targets an AmlCompute: an operator without one never pays its
import (~2.3 s, ~80 MB RSS). Checked in a fresh interpreter, since this test process may have imported it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

# The modules that may import azure-ai-ml: imported only on the way to a ParallelJob on an AmlCompute.
LAZY = ("amlops.azure.ml_jobs", "amlops.external.paralleljob_aml_job", "amlops.external.commandjob_aml_job")

# MLClient names its cloud in the process environment (AZUREML_CURRENT_CLOUD), and a cloud registered in another
# process is unknown here: azure-ai-ml's import would fail on a name an earlier test's MLClient left behind.
CLEAN = {k: v for k, v in os.environ.items() if k != "AZUREML_CURRENT_CLOUD"}

PROBE = """
import importlib, json, pkgutil, sys
import amlops
lazy = set(json.loads(sys.argv[1]))
# __main__ runs the CLI when imported.
names = [m.name for m in pkgutil.walk_packages(amlops.__path__, "amlops.")
         if m.name not in lazy and not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "ml": sorted(m for m in sys.modules if m.startswith("azure.ai.ml"))[:5]}))
"""


def test_importing_every_operator_module_but_the_azure_ml_jobs_ones_does_not_import_azure_ai_ml() -> None:
    command = [sys.executable, "-c", PROBE, json.dumps(LAZY)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=CLEAN)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert "amlops.handlers.app" in result["imported"], "the probe must reach the operator's entry point"
    assert "amlops.external.paralleljob_aml" in result["imported"], "the pure mapping is imported eagerly"
    assert result["ml"] == [], f"imported at start: {result['ml']}"


def test_the_ml_jobs_adapter_does_import_it() -> None:
    """The probe above can tell: importing the adapter does load azure.ai.ml."""
    probe = "import sys, amlops.azure.ml_jobs; print('azure.ai.ml' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=CLEAN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "True"
