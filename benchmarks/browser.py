"""Headless Chromium for the benchmarks that time a page as a person's browser draws it: one set of flags, one
driver (its own profile, always quit), one way to wait for a page's state."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Bokeh has drawn the page: the document is idle and every view finished rendering
IDLE = (
    "typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
    " && [...Bokeh.index.roots].every(v => v.has_finished())"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1700,1300",
]
#: for a page from a file: a page that reaches for the network fails rather than waits (not for a served page:
#: it maps the server's own address away too)
NO_NETWORK = "--host-resolver-rules=MAP * ~NOTFOUND"


@contextmanager
def chromium(*flags: str) -> Iterator[Any]:
    """A selenium driver of headless Chromium with :data:`FLAGS` and ``flags`` (exits with a message when
    Chromium is not installed)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        sys.exit("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    profile = tempfile.mkdtemp(prefix="g2g-bench-")
    for flag in [*FLAGS, *flags, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(300)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, expression: str, timeout: float = 300) -> float:
    """Seconds until a JavaScript expression is truthy in the page."""
    start = time.perf_counter()
    while not driver.execute_script(f"return {expression}"):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(expression)
        time.sleep(0.01)
    return time.perf_counter() - start
