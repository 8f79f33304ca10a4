"""Errors that stop a campaign, each naming the problem and how to fix it.

    PassPushError
    ├── CampaignConfigError     the conf/form is invalid (unknown audience, bad rate, ...)
    ├── MessageError            the message template is empty, too long or has an unknown placeholder
    ├── AudienceError           the audience cannot be resolved (bad segment SQL, bad CSV, unknown program)
    ├── ConfirmationError       the audience is larger than what was confirmed or allowed
    └── CampaignAbortedError    PassKit refused our credentials (401/403): nothing more is sent

PassKit's own errors live in ``passpush.passkit.errors``.
"""


class PassPushError(Exception):
    """Base of every error passpush raises on purpose."""


class CampaignConfigError(PassPushError):
    """The campaign's configuration is invalid."""


class MessageError(PassPushError):
    """The message template cannot be rendered safely."""


class AudienceError(PassPushError):
    """The audience cannot be resolved."""


class ConfirmationError(PassPushError):
    """The audience exceeds what a person confirmed, or the campaign's safety cap."""


class CampaignAbortedError(PassPushError):
    """The campaign was stopped (credentials rejected, cancelled): no further pushes."""
