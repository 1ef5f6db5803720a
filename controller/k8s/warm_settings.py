"""The warm pools' THREADBOX_WARM_* settings (k8s/pool.py, k8s/pools.py); ``Settings`` inherits them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from controller.extensions import check_modules, module_names


class WarmPoolSettings(BaseSettings):
    warm_pool_size: int = Field(
        default=0, ge=0, description="Unclaimed warm sandbox pods kept ready for new threads; 0: no pool."
    )
    warm_pool_refill_concurrency: int = Field(
        default=2, ge=1, description="Warm pods started at once while refilling (pod starts compete for CPU)."
    )
    warm_preimport: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated modules the kernels of warm pods import before a claim (e.g. "
        "numpy,pandas), so a thread whose kept variables need them resumes without importing them; "
        "they cost every warm pod their memory.",
    )

    @field_validator("warm_preimport", mode="before")
    @classmethod
    def _modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return module_names(value)
        return check_modules(value) if isinstance(value, list) else value
