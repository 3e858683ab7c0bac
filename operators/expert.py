"""dora node `expert`: the privileged tele-operator. Tours every room from ground-truth pose.

Inputs: `ground_truth` (Odometry in map), `obstacles` (DynamicObstacles). Output: `expert_cmd_vel`
at ASTRA_EXPERT_HZ (default 20 Hz) of robot time. Replans run on a thread of their own: a command
held up by one would reach the actuation layer stale and make its watchdog stop the robot.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from dora import Node
from scipy.spatial.transform import Rotation

from operators import config
from schemas.messages import DynamicObstacles, Odometry, from_arrow, to_arrow
from schemas.world import World
from sim.expert import ExpertDriver


def main(node: Node | None = None) -> None:
    node = node or Node()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="expert-planner") as planner_pool:
        driver = ExpertDriver(World.load(config.world_dir()), seed=config.episode_seed(), planner_pool=planner_pool)
        period_ns = int(1e9 / config.expert_hz())
        obstacles: DynamicObstacles | None = None
        next_ns: int | None = None
        started = False
        for event in node:
            if event["type"] == "STOP":
                break
            if event["type"] != "INPUT":
                continue
            if event["id"] == "obstacles":
                obstacles = from_arrow(event["value"], event["metadata"], DynamicObstacles)
            elif event["id"] == "ground_truth":
                odom = from_arrow(event["value"], event["metadata"], Odometry)
                if next_ns is not None and odom.t_ns < next_ns:
                    continue
                # A fixed schedule keeps the average rate exact when poses arrive at a rate it does not divide.
                next_ns = odom.t_ns + period_ns if next_ns is None else max(next_ns + period_ns, odom.t_ns)
                yaw = Rotation.from_quat(odom.orientation).as_euler("zyx")[0]
                cmd = driver.command(odom.t_ns, (odom.position[0], odom.position[1], yaw), obstacles)
                # Silent until the first tour is planned: actuation holds the robot still meanwhile, whereas
                # commands sent while the planner thread holds the GIL would arrive late and trip the watchdog.
                started = started or len(driver.path) > 0
                if started:
                    node.send_output("expert_cmd_vel", *to_arrow(cmd))


if __name__ == "__main__":
    main()
