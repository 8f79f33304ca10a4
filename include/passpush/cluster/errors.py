"""The one error the cluster commands raise on purpose: its message says what is wrong and what to do."""


class ClusterError(RuntimeError):
    """A service is unreachable, did not start, or the cluster's state is inconsistent."""
