"""MuJoCo simulator: procedural buildings, robot model, sensors, scenarios and the expert driver.

Importing any `sim` module picks MuJoCo's rendering backend first, before anything imports `mujoco`:
MuJoCo reads MUJOCO_GL once, at import, and its default (GLFW) needs a display that robots, CI and
dora nodes do not have. A user's own MUJOCO_GL wins.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
