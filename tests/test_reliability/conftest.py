"""The app fixtures (live server on a free port, mean-shape checkpoint, chromium) serve these tests too."""
from tests.test_app.conftest import app_server, browser_factory, mean_shape_checkpoint, start_app  # noqa: F401
