"""The one exception tree: every error the product raises on purpose derives from here."""

from orchestrator.model import Outcome


class UnstoppableError(Exception):
    """Base of every error the CLI and daemon translate into a message."""


class ConfigError(UnstoppableError):
    """A settings or customer file is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SecretError(UnstoppableError):
    """A secret reference could not be resolved."""


class RuntimeUnavailable(UnstoppableError):
    """The container runtime (Docker) cannot be reached or refused a request."""


class JobBusy(UnstoppableError):
    """A run was refused because a container of the same job is already running."""


class RunStopped(UnstoppableError):
    """A run stopped before rustic gave an answer; `outcome` says how it ended, and why.

    The one way a step of a run (setup, a worker the runtime refused, a drill's step) says
    "this run is over": each run catches it once, where its record is made.
    """

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class RunFailed(UnstoppableError):
    """A rustic command in a worker did not do what it was asked to."""


class ServeFailed(UnstoppableError):
    """The daemon cannot serve what it must (its /metrics): it does not start without it."""
