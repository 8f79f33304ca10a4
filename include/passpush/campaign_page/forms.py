"""The page's campaign form and how it becomes a ``push_campaign`` conf.

The conf is validated by ``passpush.campaign_spec.parse_conf``, the same function the DAG's
``create_campaign`` calls, so the page refuses exactly what a run would refuse, before it runs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from passpush.campaign_page import uploads
from passpush.campaign_spec import parse_conf
from passpush.errors import CampaignConfigError

PREVIEW_NAME = "Campaign page preview"


class CampaignForm(BaseModel):
    """What the admin filled in: a program, a message and one of three audiences."""

    model_config = ConfigDict(extra="forbid")

    program_id: str
    name: str = Field(default="", max_length=200)
    message: str = Field(default="", max_length=2000)
    audience: Literal["all_active", "segment", "csv"] = "all_active"
    segment: str | None = None
    segment_params: dict[str, Any] = Field(default_factory=dict)
    csv_path: str | None = None

    def conf(self, *, dry_run: bool) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "program_id": self.program_id, "name": self.name.strip(), "message": self.message,
            "audience": self.audience, "segment_params": {}, "dry_run": dry_run,
        }
        if self.audience == "segment":
            conf.update(segment=self.segment, segment_params=self.segment_params)
        elif self.audience == "csv":
            if not self.csv_path:
                raise CampaignConfigError("audience 'csv' needs a file: upload a CSV of member ids first")
            conf["csv_path"] = uploads.checked_reference(self.csv_path)
        return conf

    def preview_conf(self) -> dict[str, Any]:
        """A dry run's conf; a name is not needed to count the audience."""
        conf = self.conf(dry_run=True)
        conf["name"] = conf["name"] or PREVIEW_NAME
        parse_conf(conf)
        return conf


class LaunchForm(CampaignForm):
    """The form plus the count the admin confirmed; the run stops if the audience has grown past it."""

    confirm_recipients: int = Field(ge=1)

    def launch_conf(self) -> dict[str, Any]:
        conf = {**self.conf(dry_run=False), "confirm_recipients": self.confirm_recipients}
        parse_conf(conf)
        return conf
