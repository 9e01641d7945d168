"""Start `mozart serve` on a free port and drive its page in Debian's headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def have_chromium() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mozart serve -m MODEL --port P` as a subprocess; ``url``, ``workdir`` and ``stop()``."""

    def __init__(self, model: Path | None, extra: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mozart", "serve", "--port", str(self.port)] + (extra or [])
        if model is not None:
            cmd += ["-m", str(model)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.banner = self.process.stdout.readline()  # printed once the model is loaded
        self.workdir = Path(self.banner.split("results in ")[1].split(" (deleted")[0]) if "results in " in \
            self.banner else None
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the studio did not start: {self.banner} {self.process.stderr.read()}")

    def stop(self) -> str:
        """Ctrl-C, as a user stops it; returns what it wrote on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.stderr.read()


def browser(width: int = 1400, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def generate_in_page(driver, url: str, bars: int = 2, seed: int = 0, prompt: Path | None = None,
                     timeout: float = 180, mode: str = "generate", bar_range: str = "", use_last: bool = False,
                     programs: tuple[str, ...] = ()) -> dict:
    """Fill the form (what to do, bars, seed, instruments, the last result or an upload), press
    Generate, wait for the audio's source; return what the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    if driver.current_url.rstrip("/") != url.rstrip("/"):
        driver.get(url)
    for field, value in (("bars", bars), ("seed", seed)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(str(value))
    Select(driver.find_element(By.ID, "mode")).select_by_value(mode)
    box = driver.find_element(By.ID, "range")
    box.clear()
    box.send_keys(bar_range)
    if driver.find_element(By.ID, "use_last").is_selected() != use_last:
        driver.find_element(By.ID, "use_last").click()
    instruments = Select(driver.find_element(By.ID, "programs"))
    instruments.deselect_all()
    for program in programs:
        instruments.select_by_value(program)
    if prompt is not None:
        driver.find_element(By.ID, "prompt").send_keys(str(prompt))
    before = driver.find_element(By.ID, "audio").get_attribute("src") or ""
    driver.find_element(By.ID, "generate").click()
    WebDriverWait(driver, timeout).until(
        lambda d: (d.find_element(By.ID, "error").text
                   or ((d.find_element(By.ID, "audio").get_attribute("src") or "") not in ("", before)
                       and d.find_element(By.ID, "generate").is_enabled())))
    roll = driver.find_element(By.ID, "roll")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return arguments[0].complete", roll))
    return {"error": driver.find_element(By.ID, "error").text,
            "audio": driver.find_element(By.ID, "audio").get_attribute("src"),
            "roll_width": driver.execute_script("return arguments[0].naturalWidth", roll),
            "midi": driver.find_element(By.ID, "dl-mid").get_attribute("href"),
            "title": driver.find_element(By.ID, "title").text,
            "history": [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#history li")]}


def screenshot(model: Path | None, out: Path, bars: int = 8, seed: int = 0) -> None:
    """A screenshot of the page after one generation (for the README)."""
    server = Server(model)
    driver = browser(1400, 1500)  # the whole form, which has grown
    try:
        generate_in_page(driver, server.url, bars=bars, seed=seed)
        driver.execute_script("window.scrollTo(0, 0)")  # clicking Generate scrolled the page to the button
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        server.stop()


if __name__ == "__main__":  # python tests/studio_driver.py docs/studio.png [MODEL_DIR]
    screenshot(Path(sys.argv[2]) if len(sys.argv) > 2 else None, Path(sys.argv[1]))
