# pytest finds kbfix (and through it kbtest and the keybroker package) here
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbfix  # noqa: E402,F401  (sets sys.path for the rest)
