"""The extension's config (``c.TornadoMemoryExporter.*``), its Jupyter-authenticated handler,
and the load and start hooks that ``__init__`` hands Jupyter."""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from prometheus_client import REGISTRY, CollectorRegistry
from tornado import web
from traitlets import Bool, Dict, Unicode
from traitlets.config import Configurable

from .. import validate
from ..config import Config
from ..install import Exporter, install
from ..web.metrics import MetricsHandler
from ..web.protected import ProtectedHandler

SETTINGS_KEY = "tornado_memory_exporter"
"""Where the running ``Exporter`` is kept: ``serverapp.web_app.settings[SETTINGS_KEY]``."""


class TornadoMemoryExporter(Configurable):
    """Options of the Jupyter Server extension, set like any Jupyter option::

    c.TornadoMemoryExporter.path = "/tornado-memory/metrics"
    c.TornadoMemoryExporter.options = {"census_interval": 30}
    """

    path = Unicode(
        "/tornado-memory/metrics",
        help="URL path of the metrics, under the server's base_url "
        "(Jupyter's own /metrics stays its own).",
    ).tag(config=True)
    authenticate = Bool(
        True,
        help="Require Jupyter's token or login (a Prometheus job then sends "
        "'Authorization: token <token>'). False serves the route without Jupyter's check: "
        "set auth_token or basic_auth in options then.",
    ).tag(config=True)
    shared_registry = Bool(
        False,
        help="Publish on prometheus_client's global registry, beside Jupyter's own metrics, so "
        "that Jupyter's /metrics serves ours too. Off: a registry of our own.",
    ).tag(config=True)
    options = Dict(
        {},
        help="Keyword options of tornado_memory_exporter.Config, e.g. {'census_interval': 30}.",
    ).tag(config=True)

    def exporter_config(self) -> Config:
        """The validated ``Config`` of ``options`` (``ValueError``/``TypeError`` on a bad one)."""
        try:
            return Config(**self.options)
        except TypeError as error:
            if isinstance(error, validate.OptionTypeError):
                raise
            raise TypeError(f"c.TornadoMemoryExporter.options: {error}") from None


class JupyterMetricsHandler(JupyterHandler, MetricsHandler):
    """``MetricsHandler`` behind Jupyter's identity provider: the token (header or ``?token=``)
    or a login cookie; anything else gets 403, as Jupyter's own /metrics does."""

    SUPPORTED_METHODS = MetricsHandler.SUPPORTED_METHODS
    write_error = ProtectedHandler.write_error  # one plain-text line, not Jupyter's HTML page

    def get_login_url(self) -> str:
        raise web.HTTPError(403)  # a scraper cannot follow a login page: refuse, like an API

    @web.authenticated
    async def get(self) -> None:
        await MetricsHandler.get(self)

    head = get


def load(serverapp: Any) -> None:
    """Check the options now, while Jupyter can still report a bad one as a failed load."""
    settings = TornadoMemoryExporter(parent=serverapp)
    settings.exporter_config()
    validate.url_path("c.TornadoMemoryExporter.path", settings.path)


def start(serverapp: Any) -> Exporter:
    """Install on Jupyter's application, on its running loop (the start hook's)."""
    settings = TornadoMemoryExporter(parent=serverapp)
    web_app = serverapp.web_app
    base_url = web_app.settings.get("base_url", "/")
    exporter = install(
        web_app,
        url_path_join(base_url, settings.path),
        config=settings.exporter_config(),
        registry=REGISTRY if settings.shared_registry else CollectorRegistry(),
        handler=JupyterMetricsHandler if settings.authenticate else MetricsHandler,
    )
    web_app.settings[SETTINGS_KEY] = exporter
    serverapp.log.info(
        "tornado_memory_exporter: metrics at %s%s", base_url.rstrip("/"), settings.path
    )
    return exporter
