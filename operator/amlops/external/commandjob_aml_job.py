"""The Estimator's successor, azure-ai-ml's own ``command()``, built from
:func:`~amlops.external.commandjob_aml.command_run`'s plain arguments.

Imports azure-ai-ml: imported only on the way to submitting a CommandJob (tests/unit/test_lazy_imports.py).
"""

from __future__ import annotations

from azure.ai.ml import Output, command
from azure.ai.ml.entities import Command, Environment
from azure.ai.ml.exceptions import MlException
from marshmallow import ValidationError

from amlops.external.commandjob_aml import CommandRun, EnvironmentSource
from amlops.external.paralleljob_aml_job import _input, identity_configuration
from amlops.reconcile.errors import TerminalError
from amlops.status import REASON_INVALID_SPEC


def build_command_job(run: CommandRun) -> Command:
    """``command(...)`` for :func:`command_run`'s arguments. Raises azure-ai-ml's own refusals as ``InvalidSpec``:
    what azure-ai-ml refuses, Azure ML never sees."""
    arguments = dict(run.arguments)
    if (given := arguments.pop("identity", None)) is not None:
        arguments["identity"] = identity_configuration(given)
    try:
        return command(
            **arguments,
            code=run.code,
            environment=environment(run.environment),
            inputs={key: _input(data) for key, data in run.inputs.items()},
            outputs={key: Output(type=data.type, path=data.path) for key, data in run.outputs.items()},
        )
    except MlException as error:
        raise TerminalError(REASON_INVALID_SPEC, error.message) from error
    except ValidationError as error:  # azure-ai-ml's schemas refuse a value before its own validation runs
        raise TerminalError(REASON_INVALID_SPEC, str(error.messages)) from error


def environment(source: EnvironmentSource) -> str | Environment:
    """A registered environment by reference, else an anonymous one (azure-ai-ml registers it at submission)."""
    if source.registered is not None:
        return source.registered
    return Environment(image=source.image, conda_file=source.conda)
