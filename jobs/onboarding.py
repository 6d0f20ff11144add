"""User onboarding, the seed problem: home directory, mailbox, chat account — minutes each in
real life, simulated here with real file work under $DEMO_ROOT and short sleeps."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from supervisor import JobContext, job

USERNAME = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="Login name of the new user.")


def demo_root() -> Path:
    return Path(os.environ.get("DEMO_ROOT", "/tmp/runspace-demo"))


class HomeDir(BaseModel):
    username: str = USERNAME
    region: Literal["eu", "us"] = "eu"
    delay: float = Field(1.0, ge=0, le=600, description="Simulated slowness (seconds).")


@job(timeout=600, idle_timeout=120, log_user="username", concurrency_key="username")
def create_home_dir(params: HomeDir, ctx: JobContext) -> dict:
    """Create the user's home directory with a skeleton."""
    home = demo_root() / params.region / "home" / params.username
    ctx.log(f"creating home directory {home}")
    for step, sub in enumerate(["Documents", "Desktop", ".config"], start=1):
        (home / sub).mkdir(parents=True, exist_ok=True)
        ctx.progress(step, 3, f"created {sub}")
        time.sleep(params.delay / 3)
    (home / ".profile").write_text(f"export USER={params.username}\n")
    ctx.log("home directory ready")
    return {"home": str(home), "region": params.region}


class Mailbox(BaseModel):
    username: str = USERNAME
    quota_mb: int = Field(1024, ge=1, le=102400)
    delay: float = Field(1.0, ge=0, le=600)


@job(timeout=600, idle_timeout=120, log_user="username", concurrency_key="username", retries=2)
def create_mailbox(params: Mailbox, ctx: JobContext) -> dict:
    """Provision a mailbox (a Maildir with a quota file)."""
    maildir = demo_root() / "mail" / params.username
    ctx.log(f"provisioning mailbox with {params.quota_mb} MB quota")
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    time.sleep(params.delay)
    (maildir / "quota.json").write_text(json.dumps({"quota_mb": params.quota_mb}))
    ctx.log("mailbox ready")
    return {"address": f"{params.username}@example.org", "quota_mb": params.quota_mb}


class ChatAccount(BaseModel):
    username: str = USERNAME
    channels: list[str] = Field(default_factory=lambda: ["general"], max_length=20)
    delay: float = Field(1.0, ge=0, le=600)


@job(timeout=300, log_user="username", concurrency_key="username")
def create_chat_account(params: ChatAccount, ctx: JobContext) -> dict:
    """Create a chat account and join the default channels."""
    registry = demo_root() / "chat" / "accounts.jsonl"
    registry.parent.mkdir(parents=True, exist_ok=True)
    for i, channel in enumerate(params.channels, start=1):
        ctx.progress(i, len(params.channels), f"joined #{channel}")
        time.sleep(params.delay / max(len(params.channels), 1))
    with registry.open("a") as f:
        f.write(json.dumps({"user": params.username, "channels": params.channels}) + "\n")
    ctx.log(f"chat account created in {len(params.channels)} channel(s)")
    return {"handle": f"@{params.username}", "channels": params.channels}
