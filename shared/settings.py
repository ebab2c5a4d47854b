"""All configuration, read from environment variables in one place.

Every field is documented in the README's "Settings" table; the env var is the field
name in upper case (``redis_url`` -> ``REDIS_URL``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", protected_namespaces=())

    # --- queue -------------------------------------------------------------------------
    # repr=False: the URL may hold the Redis password, and settings may end up in a log.
    redis_url: str = Field(default="redis://localhost:6379/0", repr=False)
    embedded: bool = Field(
        default=False,
        description="Run tasks inside the API process, no Redis (`make run` sets it when needed).",
    )
    redis_sentinels: str = Field(
        default="",
        description="Comma-separated host:port of Redis Sentinels; set, the master is found "
        "through them and REDIS_URL gives only the database and the password.",
    )
    redis_master_name: str = Field(default="mnist", min_length=1)
    redis_min_replicas: int = Field(
        default=0,
        ge=0,
        description="Replicas that must hold a job before it is accepted (Redis WAIT).",
    )
    redis_replica_timeout_seconds: float = Field(default=1.0, gt=0)
    redis_memory_high_water: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Refuse new jobs once Redis uses this share of its maxmemory; the rest "
        "is kept for the results of the jobs already accepted.",
    )
    lost_task_check_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the API looks for task messages lost between Redis and a "
        "worker (a Redis crash or failover as a worker fetched one) and queues them again.",
    )
    lost_task_grace_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A message is looked at once it is this old.",
    )
    queue_name: str = "mnist"
    result_ttl_seconds: int = Field(default=3600, ge=10)
    redis_timeout_seconds: float = Field(default=1.0, gt=0)

    # --- waiting and limits --------------------------------------------------------------
    sync_timeout_seconds: float = Field(default=10.0, gt=0)
    task_soft_time_limit_seconds: float = Field(default=20.0, gt=0)
    task_time_limit_seconds: float = Field(default=30.0, gt=0)
    task_max_retries: int = Field(default=2, ge=0)
    task_events: bool = Field(
        default=False,
        description="Workers send Celery task events (what Flower shows); off, they cost "
        "nothing (see the README's Performance section for what they cost on).",
    )
    visibility_timeout_seconds: int = Field(
        default=60, ge=2, description="A vanished worker's unacked task returns after this."
    )
    max_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=40_000_000, ge=784)
    max_batch_files: int = Field(default=64, ge=1)
    max_queue_depth: int = Field(default=1000, ge=1)

    # --- micro-batching in the API -------------------------------------------------------
    batch_window_ms: float = Field(default=2.0, ge=0)
    batch_max_size: int = Field(default=64, ge=1)
    batch_hold_ms: float = Field(default=50.0, ge=0)
    batch_in_flight: int = Field(
        default=0,
        ge=0,
        description="Tasks in flight per API process; 0: twice the workers' processes.",
    )

    # --- model and data ------------------------------------------------------------------
    model_path: Path = Path("mnist_model.joblib")
    model_reload_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often each worker process looks for a newly activated model version.",
    )
    mnist_data_dir: Path | None = None
    mnist_cache_dir: Path = Path.home() / ".cache" / "mnist-service"
    optdigits_data_dir: Path | None = None
    train_seed: int = 0
    train_limit: int | None = Field(
        default=None, ge=100, description="Train on the first N images only (tests)."
    )
    train_other_writers: bool | None = Field(
        default=None,
        description="Also train on UCI's optdigits training scans (30 writers MNIST lacks); "
        "unset: unless TRAIN_LIMIT is set.",
    )
    train_typeface_renders: int | None = Field(
        default=None,
        ge=0,
        description="Also train on digits printed in some 200 typefaces, this many renders of "
        "each digit in each (0: none), and add an MNIST head; unset: 24, or 0 with TRAIN_LIMIT.",
    )

    # --- HTTP ----------------------------------------------------------------------------
    cors_origins: list[str] = Field(default_factory=list)
    log_level: str = "INFO"

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_host_port(cls, value: str) -> str:
        sentinel_nodes(value)  # a typo fails at start-up, not at the first request
        return value


def sentinel_nodes(text: str) -> list[tuple[str, int]]:
    """``"h1:26379, [::1]:26380"`` -> ``[("h1", 26379), ("::1", 26380)]``; else ``ValueError``."""
    nodes = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        nodes.append((host, int(port)))
    return nodes


def redacted_url(url: str) -> str:
    """``url`` with its password (if any) masked, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literals keep their brackets
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` instead)."""
    return Settings()
