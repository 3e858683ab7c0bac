"""dora node `global`: relocalization from images, text goals and routing on the map (models/navigation).

Inputs: `mission_goal` (MissionGoal), `local_odom` (fused odometry, which also gives robot time), the three
`image_*` cameras, `nav_events` from local and `safety_events` from actuation. Outputs: `localization`,
`localization_pose`, `map_odom` (/tf), `goal`, `route`, `subgoals` (odom) and `mission_status`.

Relocalization runs on a worker thread, every ASTRA_RELOCALIZE_S of robot time and whenever local or
actuation asks; the loop keeps translating messages meanwhile, so local never waits for it. ASTRA_MAP names
the map (ASTRA_MAP_KEY opens an encrypted one); ASTRA_GLOBAL chooses the localizer (classical, astra, hybrid).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch
from dora import Node

from datasets.navigation import global_navigator, read_navigation_map
from models.navigation.global_navigator import GlobalParams
from operators import config
from operators.episode_stream import is_timeout, raise_if_error
from schemas.messages import CompressedImage, Event, MissionGoal, Odometry, from_arrow, to_arrow

POLL_S = 0.02


def main(node: Node | None = None) -> None:
    node = node or Node()
    # One thread: the text encoder's default pool fights the other nodes for the cores and runs 20x slower.
    torch.set_num_threads(1)
    robot = config.robot_config()
    navigator = global_navigator(
        read_navigation_map(config.map_dir()),
        robot,
        GlobalParams(relocalize_s=config.relocalize_s()),
        config.global_localization(),
    )
    images: dict[str, CompressedImage] = {}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relocalize")
    job: tuple[Future, int, str] | None = None  # (result, images' stamp, trigger)
    now_ns: int | None = None

    def publish(outputs: list[tuple[str, object]]) -> None:
        for output_id, msg in outputs:
            node.send_output(output_id, *to_arrow(msg))

    while True:
        event = node.next(timeout=POLL_S)
        if event is None or event["type"] == "STOP":
            break
        if not is_timeout(event):
            raise_if_error(event)
        if event["type"] == "INPUT_CLOSED" and event["id"].startswith("image_"):
            break  # the sensor is gone: in the navigation graph's cycles, no other input would ever close
        if event["type"] == "INPUT":
            input_id = event["id"]
            msg = from_arrow(event["value"], event["metadata"])
            if isinstance(msg, MissionGoal):
                publish(navigator.on_mission_goal(msg))
            elif isinstance(msg, Odometry):
                navigator.on_local_odom(msg)
                now_ns = msg.t_ns
            elif isinstance(msg, Event):
                publish(navigator.on_event(msg))
            elif isinstance(msg, CompressedImage):
                images[input_id.removeprefix("image_")] = msg
        if job is not None and job[0].done() and now_ns is not None:
            future, t_ns, trigger = job
            job = None
            publish(navigator.on_fix(future.result(), t_ns, trigger, (now_ns - t_ns) * 1e-9))
        if job is None and now_ns is not None and (trigger := navigator.due_relocalization(now_ns)):
            stamps = {msg.t_ns for msg in images.values()}
            if len(images) == len(robot.cameras) and len(stamps) == 1:
                t_ns = stamps.pop()
                job = (pool.submit(navigator.localization_job(t_ns, trigger), dict(images)), t_ns, trigger)
                navigator.started_relocalization(now_ns)
    pool.shutdown(wait=False, cancel_futures=True)


if __name__ == "__main__":
    main()
