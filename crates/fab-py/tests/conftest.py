"""pytest configuration: makes the numpy test densities (densities.py beside this file) importable, and gives the
Ctrl-C tests a SIGINT that raises KeyboardInterrupt whatever disposition the test process inherited."""
import os
import signal
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def interrupt_after():
    """`interrupt_after(seconds)` sends this process SIGINT once, `seconds` from now.

    A shell that starts a job in the background without job control (`cmd &` in a script, `nohup ... &`) starts it
    with SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the signal would be lost and a test
    waiting for it would run to its whole budget. The fixture installs Python's default handler for the test and
    restores the inherited one afterwards.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timers = []

    def start(seconds):
        timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
        timers.append(timer)
        timer.start()

    yield start
    for timer in timers:
        timer.cancel()
    signal.signal(signal.SIGINT, previous)
