"""The one exception tree: every error the product raises on purpose derives from here."""


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


class RunFailed(UnstoppableError):
    """A rustic command in a worker did not do what it was asked to."""


class ServeFailed(UnstoppableError):
    """The daemon cannot serve what it must (its /metrics): it does not start without it."""
