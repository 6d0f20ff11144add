"""What every dashboard route is handed: the daemon client, who we are, the secrets, the templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from supervisor.ui.daemon_api import DaemonApi
from supervisor.ui.guard import Secrets
from supervisor.ui.hub import UserLogHub
from supervisor.ui.view import FILTERS

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class UiState:
    api: DaemonApi
    user: str
    keys: Secrets
    port: int
    templates: Jinja2Templates
    hub: UserLogHub = field(init=False)  # made by the app's lifespan, which owns its followers

    @property
    def origins(self) -> tuple[str, ...]:
        return f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"


def ui_state(request: Request) -> UiState:
    return request.app.state.ui


def make_templates() -> Jinja2Templates:
    # Autoescape everywhere: job params, logs, results and messages are untrusted text.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return Jinja2Templates(env=env)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    ui = ui_state(request)
    return ui.templates.TemplateResponse(request, name, {"user": ui.user, "csrf": ui.keys.csrf, **context},
                                         status_code=status_code)


def render_fragment(ui: UiState, name: str, **context: Any) -> str:
    """A piece of a page (a table row, the status box) for a server-sent event: the same template
    the page used, so a live update looks exactly like a reload."""
    return ui.templates.get_template(name).render(user=ui.user, csrf=ui.keys.csrf, **context)
