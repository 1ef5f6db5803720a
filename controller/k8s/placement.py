"""Where sandbox pods may run and what they carry for the platform: node selection, tolerations,
affinity, spread, priority, pull secrets and policy, extra labels and annotations.

The structured settings are the Kubernetes fields' own JSON (the chart passes its values through
``toJson``), so a platform team writes them as it would in any pod spec.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

PullPolicy = Literal["Always", "IfNotPresent", "Never"]


class LocalObjectReference(TypedDict):
    name: str


class PlacementSettings(BaseSettings):
    """The THREADBOX_SANDBOX_* placement settings; ``Settings`` inherits them."""

    sandbox_node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector of sandbox pods (JSON object)."
    )
    sandbox_tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="tolerations of sandbox pods (JSON list)."
    )
    sandbox_affinity: dict[str, Any] = Field(
        default_factory=dict, description="affinity of sandbox pods (JSON object)."
    )
    sandbox_topology_spread: list[dict[str, Any]] = Field(
        default_factory=list, description="topologySpreadConstraints of sandbox pods (JSON list)."
    )
    sandbox_priority_class_name: str | None = Field(
        default=None, description="PriorityClass of sandbox pods; unset: the cluster default."
    )
    sandbox_image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        description='imagePullSecrets of sandbox pods (JSON, [{"name": ...}]), in the sandbox namespace.',
    )
    sandbox_image_pull_policy: PullPolicy = Field(
        default="IfNotPresent", description="imagePullPolicy of the sandbox container."
    )
    sandbox_extra_labels: dict[str, str] = Field(
        default_factory=dict, description="More labels on sandbox pods (JSON); threadbox's own win."
    )
    sandbox_extra_annotations: dict[str, str] = Field(
        default_factory=dict, description="More annotations on sandbox pods (JSON); threadbox's own win."
    )


@dataclass(frozen=True)
class Placement:
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    affinity: dict[str, Any]
    topology_spread: list[dict[str, Any]]
    priority_class_name: str | None
    image_pull_secrets: list[LocalObjectReference]
    extra_labels: dict[str, str]
    extra_annotations: dict[str, str]

    @classmethod
    def from_settings(cls, s: PlacementSettings) -> Placement:
        """Each field from the setting of its name with the sandbox_ prefix."""
        return cls(**{f.name: getattr(s, f"sandbox_{f.name}") for f in fields(cls)})

    def spec_fields(self) -> dict[str, Any]:
        """The pod spec's placement fields; an unset one is left out, so the API's default holds."""
        spec = {
            "nodeSelector": self.node_selector,
            "tolerations": self.tolerations,
            "affinity": self.affinity,
            "topologySpreadConstraints": self.topology_spread,
            "priorityClassName": self.priority_class_name,
            "imagePullSecrets": self.image_pull_secrets,
        }
        return {key: value for key, value in spec.items() if value}
