"""The page in a real browser: headless Chromium (Debian's, with its chromedriver) hears a question WAV through
its fake microphone (`--use-file-for-fake-audio-capture`), streams it to the server while it plays, and shows
the answers the same models give offline on what the server heard. The example button streams the bundled
question; its answers are the models' on that file. The screenshot is kept (docs/figures/serve_page.png is
one, taken with the demo's model: AURA_JAX_SERVE_SCREENSHOT=PATH)."""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aura_jax.serve.app import STATIC, Limits, Server

from .test_protocol import offline

EXAMPLE = STATIC / "example.wav"


def find(*names):
    return next((shutil.which(n) for n in names if shutil.which(n)), None)


@pytest.fixture(scope="module")
def chromium():
    browser, driver = find("chromium", "chromium-browser", "google-chrome"), find("chromedriver")
    if not (browser and driver):
        message = "headless Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {message}")
        pytest.skip(f"needs {message}")
    return browser, driver


@pytest.fixture(scope="module")
def live(aura, cascade, tmp_path_factory):
    """The server on a free 127.0.0.1 port, recording what it hears (to compare with offline)."""
    from aura_jax.bench.serve import serve_in_thread

    heard = tmp_path_factory.mktemp("heard")
    url, stop = serve_in_thread(Server(aura, cascade, Limits(), record_dir=str(heard)))
    yield url + "/", heard
    stop()


@pytest.fixture(scope="module")
def page(chromium, live, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,760",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={EXAMPLE}", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromium[1]), options=opts)
    driver.get(live[0])
    yield driver
    logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
    driver.quit()
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs


def wait_for(driver, states, timeout=90):
    end = time.time() + timeout
    while time.time() < end:
        state = driver.execute_script("return document.body.dataset.state")
        if state in states:
            return state
        time.sleep(0.1)
    raise AssertionError(f"the page stayed {state!r}: {driver.find_element('id', 'status').text}")


def shown(driver):
    text = {i: driver.find_element("id", i).text for i in ("aura-text", "cascade-text", "cascade-transcript",
                                                            "aura-timing", "cascade-timing", "status")}
    return text


def pcm_of(path):
    wave, rate = sf.read(str(path), dtype="int16")
    assert rate == 16000
    return wave


def test_the_example_button_streams_the_bundled_question_and_shows_both_answers(page, aura, cascade):
    wait_for(page, {"idle"})
    page.find_element("id", "example").click()
    assert wait_for(page, {"done", "error"}) == "done", shown(page)["status"]
    got = shown(page)
    aura_text, transcript, cascade_text = offline(aura, cascade, pcm_of(EXAMPLE))
    assert got["aura-text"] == aura_text and got["cascade-text"] == cascade_text
    assert got["cascade-transcript"] == f"“{transcript}”" and "capital of france" in transcript.lower()
    assert got["aura-timing"].startswith("first token ") and "after the end of speech" in got["aura-timing"]
    assert "after the cascade started" in got["cascade-timing"]


def test_the_microphone_streams_while_speaking_and_the_answer_is_offlines_on_what_was_heard(page, live, aura,
                                                                                                cascade, tmp_path):
    before = set(live[1].glob("*.wav"))
    wait_for(page, {"idle", "done"})
    page.find_element("id", "talk").click()
    wait_for(page, {"listening"}, timeout=30)
    time.sleep(2.5)  # the fake microphone plays the question file (1.9 s) on a loop
    page.find_element("id", "talk").click()
    assert wait_for(page, {"done", "error"}) == "done", shown(page)["status"]
    got = shown(page)
    (new,) = set(live[1].glob("*.wav")) - before
    heard = pcm_of(new)
    aura_text, transcript, cascade_text = offline(aura, cascade, heard)
    assert got["aura-text"] == aura_text and got["cascade-text"] == cascade_text
    assert got["cascade-transcript"] == f"“{transcript}”"
    # what the server heard is the question: it correlates with the file at some lag (the fake device
    # resamples; the loop starts anywhere), and the page said how long it listened
    assert 2.0 < len(heard) / 16000 < 6.0
    a, b = heard.astype(np.float64), pcm_of(EXAMPLE).astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(np.pad(b, (0, 0)), n)), n)
    assert corr.max() / (np.linalg.norm(b) ** 2) > 0.5
    out = Path(os.environ.get("AURA_JAX_SERVE_SCREENSHOT") or tmp_path / "page.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    page.save_screenshot(str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
