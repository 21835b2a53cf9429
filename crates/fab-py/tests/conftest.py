"""pytest configuration: makes the numpy test densities (densities.py beside this file) importable."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
