"""The core of the `global` node: where the robot is on the map, where the goal is, and the route between.

It holds the map's localizer, goal resolver and route graph, and turns inputs into outputs (dora output id,
message) without doing any I/O or waiting, so the dora node and the in-process evaluation run the same logic:

- `mission_goal` -> the goal is resolved from its text (goal_not_found leaves the robot still);
- `local_odom` -> kept as a short history, to tie each fix to the odometry pose at its images' stamp;
- a `LocalizationFix` (computed off the loop by `localize`, on images chosen by `due_relocalization`) ->
  `localization`, `localization_pose`, the corrected `map_odom`, and the route ahead as `subgoals` in odom;
- `nav_events` from local and `safety_events` from actuation -> relocalization requests, closed route edges
  (blocked), success.

Frames: map poses are base_link in `map`; `map_from_odom` is what each accepted fix corrects (REP-105).
"""

from __future__ import annotations

import bisect
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pycolmap
from PIL import Image

from models.goals import GoalCandidate, GoalResolver
from models.localization import LocalizationFix, RigLocalizer
from models.navigation import se2
from models.navigation.se2 import Pose2
from models.routing import SUBGOAL_SPACING_M, NoRouteError, RouteGraph, base_poses
from schemas.messages import (
    RECHECK,
    CompressedImage,
    Event,
    LocalizationResult,
    MissionGoal,
    MissionStatus,
    Odometry,
    Path,
    PoseStamped,
    PoseWithCovariance,
    TFMessage,
    Transform,
)
from schemas.topics import MAP_FRAME, ODOM_FRAME

Output = tuple[str, object]


@dataclass(frozen=True)
class GlobalParams:
    relocalize_s: float = 3.0  # periodic relocalization, seconds of robot time (ASTRA_RELOCALIZE_S)
    retry_s: float = 1.0  # after a failed or requested fix, the next one waits this long
    confirm_after_m: float = 1.5  # the fix that confirms the first comes from this far along (or relocalize_s later)
    agree_m: float = 1.0  # two fixes agree within this distance and angle, through odometry
    agree_deg: float = 10.0
    fix_sigma_m: float = 0.3  # a confirmed estimate's position uncertainty right after a fix
    odometry_drift: float = 0.05  # its growth per metre driven (wheel odometry drifts 2-5 %)
    max_prior_sigma_m: float = 1.5
    min_confidence: float = 0.5  # fixes below this do not move map -> odom, unless enough of them agree
    # Until confirmed, every fix is a vote for where odom lies in map. In aisles that look alike, each fix may be
    # unsure (a look-alike rivals it) and still be right: `consensus_fixes` votes that agree through odometry,
    # from places `vote_spacing_m` apart spanning `confirm_after_m`, and outnumber every rival, confirm the estimate
    # whatever their confidence. A sure fix that rivals outvote moves nothing. Views from one spot are one vote:
    # a robot standing still sees the same look-alike each time.
    consensus_fixes: int = 3
    vote_spacing_m: float = 0.5
    # Fixes in a row that find nothing near a confirmed estimate: it is wrong (a look-alike aisle confirmed itself),
    # so the next fix searches the whole map, and must be confirmed again.
    max_prior_misses: int = 2
    # Every this many periodic fixes of a confirmed estimate, one searches the whole map (0: never). A look-alike
    # that confirmed itself keeps winning near itself; only a search without the prior sees the true place win.
    recheck_every: int = 3
    subgoal_spacing_m: float = SUBGOAL_SPACING_M  # evenly spaced, 1.5-3 m apart
    odom_history_s: float = 30.0  # how far back a fix's stamp may lie
    resend_shift_m: float = 0.05  # re-send subgoals when a fix moves them more than this


@dataclass(frozen=True)
class _Vote:
    """An unconfirmed fix: where it put base_link in map, and odometry's pose then."""

    t_ns: int
    map_pose: Pose2
    odom_pose: Pose2

    @property
    def map_from_odom(self) -> Pose2:
        return se2.compose(self.map_pose, se2.inverse(self.odom_pose))


@dataclass
class _Mission:
    goal: MissionGoal
    target: GoalCandidate | None = None
    route_nodes: list[str] = field(default_factory=list)
    route_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # subgoals in map
    state: str = "accepted"
    closed_edges: set[tuple[str, str]] = field(default_factory=set)


class GlobalNavigator:
    """Localization, text goals and routing over one map."""

    def __init__(
        self,
        localizer: RigLocalizer,
        resolver: GoalResolver,
        nodes: pa.Table,
        edges: pa.Table,
        params: GlobalParams = GlobalParams(),
    ) -> None:
        self.localizer = localizer
        self.resolver = resolver
        self.params = params
        self._nodes = nodes
        self._edges = edges
        self._graph = RouteGraph(nodes, edges)
        ids = nodes.column("node_id").to_pylist()
        self._base_xy = dict(zip(ids, base_poses(nodes)[:, :2], strict=True))
        self.map_from_odom: Pose2 | None = None
        self._odom_t: list[int] = []
        self._odom_pose: list[Pose2] = []
        self._mission: _Mission | None = None
        self._last_fix_ns: int | None = None
        self._pending_trigger: str | None = "initial"
        self.confirmed = False  # a second fix agreed with the first: fixes may use the estimate as their prior
        self._prior_misses = 0  # fixes in a row that found nothing near the confirmed estimate
        self._periodic_fixes = 0  # periodic fixes with the prior since the last whole-map recheck
        self._challenger: Pose2 | None = None  # map -> odom of a recheck that disagreed with the estimate
        self._last_accepted_ns: int | None = None
        self._votes: list[_Vote] = []  # fixes since the estimate was last unconfirmed, oldest first
        self._sent_subgoals: np.ndarray | None = None

    # Inputs.

    def on_local_odom(self, msg: Odometry) -> None:
        self._odom_t.append(msg.t_ns)
        self._odom_pose.append((msg.position[0], msg.position[1], se2.yaw_of(msg.orientation)))
        horizon = msg.t_ns - int(self.params.odom_history_s * 1e9)
        drop = bisect.bisect_left(self._odom_t, horizon)
        if drop:
            del self._odom_t[:drop], self._odom_pose[:drop]

    def on_mission_goal(self, msg: MissionGoal) -> list[Output]:
        self._mission = mission = _Mission(msg)
        result = self.resolver.resolve(msg.text, self._map_xy())
        if result.goal is None:
            mission.state = "goal_not_found"
            labels = tuple(c.label for c in result.candidates)
            return [("mission_status", self._status(msg.t_ns, detail="no map place fits the goal", candidates=labels))]
        mission.target = result.goal
        mission.state = "localizing" if self.map_from_odom is None else "navigating"
        x, y, yaw = result.goal.pose
        outputs: list[Output] = [("goal", PoseStamped(msg.t_ns, MAP_FRAME, (x, y, 0.0), se2.yaw_quat(yaw)))]
        outputs += self._reroute(msg.t_ns)
        return [*outputs, ("mission_status", self._status(msg.t_ns))]

    def on_event(self, msg: Event) -> list[Output]:
        """A navigation event from local or a safety event from actuation."""
        if msg.kind in ("relocalize_request", "localization_fallback", "localization_lost"):
            self._pending_trigger = self._pending_trigger or "request"
        mission = self._mission
        if mission is None or mission.state in ("succeeded", "goal_not_found", "failed"):
            return []
        if msg.kind == "goal_reached" and mission.target is not None:
            mission.state = "succeeded"
            return [("mission_status", self._status(msg.t_ns, detail=msg.detail))]
        if msg.kind == "localization_lost":
            mission.state = "failed"
            return [("mission_status", self._status(msg.t_ns, detail="localization lost"))]
        if msg.kind == "route_blocked":
            return self._close_edge_near(msg) + self._reroute(msg.t_ns)
        if msg.kind == "recovery" and mission.state == "navigating":
            return [("mission_status", self._status(msg.t_ns, detail=msg.detail, state="recovering"))]
        return []

    # Relocalization: chosen here, computed by the caller off the loop, applied here.

    def due_relocalization(self, now_ns: int) -> str | None:
        """The trigger of a relocalization to start now ("initial", "request", "confirm", "periodic", "recheck"),
        or None."""
        since_s = math.inf if self._last_fix_ns is None else (now_ns - self._last_fix_ns) * 1e-9
        if self._pending_trigger in ("confirm", RECHECK):
            # From far enough along for the view to differ, or after a while if the robot stands still.
            moved = self._travelled_since(self._last_fix_ns) >= self.params.confirm_after_m
            return self._pending_trigger if moved or since_s >= self.params.relocalize_s else None
        if self._pending_trigger is not None and since_s >= self.params.retry_s:
            return self._pending_trigger
        if since_s >= self.params.relocalize_s:
            every = self.params.recheck_every
            return RECHECK if self.confirmed and every and self._periodic_fixes >= every - 1 else "periodic"
        return None

    def localization_job(self, t_ns: int, trigger: str) -> Callable[[Mapping[str, CompressedImage]], LocalizationFix]:
        """Localizing the cameras' images (by camera name) stamped `t_ns` for `trigger`, with the confirmed estimate
        as prior but on a recheck: slow (hundreds of ms) and independent of this object's later state, so callers
        may run it on a thread."""
        prior = self.map_pose_at(t_ns) if self.confirmed and trigger != RECHECK else None
        prior_pose, sigma = None, None
        if prior is not None:
            x, y, yaw = prior
            prior_pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array(se2.yaw_quat(yaw))), np.array([x, y, 0.0]))
            # The estimate's uncertainty: the last fix's, grown with the odometry's drift since. A look-alike aisle
            # further than three of these away is ruled out however well its features fit.
            drift = self.params.odometry_drift * self._travelled_since(self._last_accepted_ns)
            sigma = min(self.params.fix_sigma_m + drift, self.params.max_prior_sigma_m)
        localizer = self.localizer
        return lambda images: localizer.localize(
            {c: _rgb(m) for c, m in images.items()}, prior=prior_pose, prior_sigma_m=sigma
        )

    def started_relocalization(self, now_ns: int) -> None:
        self._pending_trigger = None
        self._last_fix_ns = now_ns

    def on_fix(self, fix: LocalizationFix, t_ns: int, trigger: str, latency_s: float) -> list[Output]:
        """Apply a fix of the images stamped `t_ns`; outputs the result and, if accepted, the corrections."""
        now_ns = t_ns + int(latency_s * 1e9)
        outputs: list[Output] = [("localization", self._result(fix, t_ns, trigger, latency_s))]
        odom_pose = self._odom_at(t_ns)
        accepted = fix.success and fix.confidence >= self.params.min_confidence and odom_pose is not None
        consensus = False
        if not self.confirmed and fix.success and odom_pose is not None:
            support, spread, rivals = self._vote(_Vote(t_ns, _planar(fix), odom_pose))
            consensus = support >= self.params.consensus_fixes and spread >= self.params.confirm_after_m
            consensus = consensus and support > rivals
            accepted = consensus or (accepted and support >= rivals)
        recheck = trigger == RECHECK and self.confirmed
        self._periodic_fixes = 0 if recheck else self._periodic_fixes + (trigger == "periodic")
        if not accepted:
            if self.map_from_odom is None:
                self._pending_trigger = "initial"  # keep trying until the first fix
            self._challenger = None  # a challenger must be agreed with by the very next recheck
            if self.confirmed and not fix.success and not recheck:
                self._prior_misses += 1
                if self._prior_misses >= self.params.max_prior_misses:
                    self.confirmed, self._prior_misses = False, 0
                    self._pending_trigger = "request"
            return outputs
        self._prior_misses = 0
        map_pose = _planar(fix)
        predicted = self.map_pose_at(t_ns)
        if recheck and not _agree(predicted, map_pose, self.params):
            # The whole map found a surer place than any near the estimate. One such fix may be a look-alike of its
            # own: the estimate stands until a second recheck, from elsewhere, agrees with this one through odometry.
            challenger, self._challenger = self._challenger, se2.compose(map_pose, se2.inverse(odom_pose))
            if challenger is None or not _agree(se2.compose(challenger, odom_pose), map_pose, self.params):
                self._pending_trigger = RECHECK
                return outputs
        self._challenger = None
        jumped = predicted is not None and not _agree(predicted, map_pose, self.params)
        if not self.confirmed:
            # Look-alike places fool a single fix: the first is tentative until a later one, from elsewhere and
            # without a prior, agrees with it through odometry. The robot may drive on the tentative one meanwhile.
            self.confirmed = consensus or (predicted is not None and _agree(predicted, map_pose, self.params))
            self._pending_trigger = None if self.confirmed else "confirm"
            if self.confirmed:
                self._votes = []
        outputs.append(("localization_pose", self._pose_message(fix, t_ns)))
        self.map_from_odom = se2.compose(map_pose, se2.inverse(odom_pose))
        self._last_accepted_ns = t_ns
        x, y, yaw = self.map_from_odom
        tf = Transform(now_ns, MAP_FRAME, ODOM_FRAME, (x, y, 0.0), se2.yaw_quat(yaw))
        outputs.append(("map_odom", TFMessage(now_ns, (tf,))))
        mission = self._mission
        if mission is not None and mission.target is not None and mission.state == "localizing":
            mission.state = "navigating"
            outputs += self._reroute(now_ns)
            outputs.append(("mission_status", self._status(now_ns)))
        elif jumped and mission is not None and mission.state in ("navigating", "recovering"):
            outputs += self._reroute(now_ns)  # the route from where the robot was thought to be may not pass here
        else:
            outputs += self._send_subgoals(now_ns)
        return outputs

    # State.

    @property
    def mission_state(self) -> str | None:
        return None if self._mission is None else self._mission.state

    @property
    def goal(self) -> GoalCandidate | None:
        return None if self._mission is None else self._mission.target

    def map_pose_at(self, t_ns: int) -> Pose2 | None:
        """Best estimate of base_link in map at `t_ns`: the odometry pose then, through map -> odom."""
        odom_pose = self._odom_at(t_ns)
        if odom_pose is None or self.map_from_odom is None:
            return None
        return se2.compose(self.map_from_odom, odom_pose)

    def _map_xy(self) -> tuple[float, float] | None:
        if not self._odom_t:
            return None
        pose = self.map_pose_at(self._odom_t[-1])
        return None if pose is None else (pose[0], pose[1])

    def _vote(self, vote: _Vote) -> tuple[int, float, int]:
        """Add a fix's vote; returns its support (the votes that agree with it, one per spot), their spread (m, in
        odom) and the most support any disagreeing vote has."""
        horizon = vote.t_ns - int(self.params.odom_history_s * 1e9)  # odometry drifts: older votes say little
        self._votes = [v for v in self._votes if v.t_ns >= horizon] + [vote]
        support, spread = self._support(vote, self._votes)
        others = [v for v in self._votes if not self._same_place(v, vote)]
        rivals = max((self._support(v, others)[0] for v in others), default=0)
        return support, spread, rivals

    def _same_place(self, a: _Vote, b: _Vote) -> bool:
        """Whether two votes put odom in one place in map: b's fix, against a's seen from b's odometry pose."""
        return _agree(se2.compose(a.map_from_odom, b.odom_pose), b.map_pose, self.params)

    def _support(self, vote: _Vote, votes: list[_Vote]) -> tuple[int, float]:
        spots: list[np.ndarray] = []
        for v in votes:
            here = np.array(v.odom_pose[:2])
            if self._same_place(v, vote) and all(np.hypot(*(here - s)) >= self.params.vote_spacing_m for s in spots):
                spots.append(here)
        spread = max((float(np.hypot(*(a - b))) for a in spots for b in spots), default=0.0)
        return len(spots), spread

    def _travelled_since(self, t_ns: int | None) -> float:
        """Distance driven (odometry) since `t_ns`."""
        if t_ns is None or not self._odom_t:
            return 0.0
        xy = np.array([p[:2] for p in self._odom_pose[bisect.bisect_left(self._odom_t, t_ns) :]])
        return float(np.hypot(*np.diff(xy, axis=0).T).sum()) if len(xy) > 1 else 0.0

    def _odom_at(self, t_ns: int) -> Pose2 | None:
        i = bisect.bisect_left(self._odom_t, t_ns)
        if not self._odom_t:
            return None
        return self._odom_pose[min(i, len(self._odom_t) - 1)]

    # Routing.

    def _reroute(self, now_ns: int) -> list[Output]:
        mission = self._mission
        if mission is None or mission.target is None or self.map_from_odom is None or not self._odom_t:
            return []
        here = self.map_pose_at(self._odom_t[-1])
        start = self._graph.nearest_node((here[0], here[1]))
        try:
            route = self._graph.route(start, mission.target.node_id)
        except NoRouteError as exc:
            mission.state = "failed"
            return [("mission_status", self._status(now_ns, detail=str(exc)))]
        mission.route_nodes = route.nodes
        mission.route_map = self._graph.subgoals(route, mission.target.pose, self.params.subgoal_spacing_m)
        xs, ys, yaws = (tuple(mission.route_map[:, i].tolist()) for i in range(3))
        outputs: list[Output] = [("route", Path(now_ns, MAP_FRAME, xs, ys, yaws))]
        self._sent_subgoals = None
        return outputs + self._send_subgoals(now_ns)

    def _send_subgoals(self, now_ns: int) -> list[Output]:
        mission = self._mission
        if mission is None or mission.state not in ("navigating", "recovering") or self.map_from_odom is None:
            return []
        here = self.map_pose_at(self._odom_t[-1]) if self._odom_t else None
        ahead = mission.route_map
        if here is not None and len(ahead) > 1:
            # Drop subgoals behind the robot: those before the route point nearest to it.
            nearest = int(np.argmin(np.hypot(*(ahead[:, :2] - np.array(here[:2])).T)))
            ahead = ahead[nearest:]
        odom_from_map = se2.inverse(self.map_from_odom)
        in_odom = se2.apply(odom_from_map, ahead[:, :2])
        if (
            self._sent_subgoals is not None
            and len(self._sent_subgoals) == len(in_odom)
            and np.abs(self._sent_subgoals - in_odom).max() < self.params.resend_shift_m
        ):
            return []
        self._sent_subgoals = in_odom
        yaws = [se2.wrap(yaw + odom_from_map[2]) for yaw in ahead[:, 2]]
        return [("subgoals", Path(now_ns, ODOM_FRAME, tuple(in_odom[:, 0]), tuple(in_odom[:, 1]), tuple(yaws)))]

    def _close_edge_near(self, msg: Event) -> list[Output]:
        """Close the route edge nearest the point local found blocked (its detail is "x,y" in odom)."""
        mission = self._mission
        if mission is None or len(mission.route_nodes) < 2 or self.map_from_odom is None:
            return []
        try:
            point = se2.apply(self.map_from_odom, np.array([float(v) for v in msg.detail.split(",")[:2]]))
        except ValueError:
            return []
        ends = np.array([self._base_xy[n] for n in mission.route_nodes])
        i = int(np.argmin(np.hypot(*((ends[1:] + ends[:-1]) / 2 - point).T)))
        mission.closed_edges |= {(mission.route_nodes[i], mission.route_nodes[i + 1])}
        closed = [
            bool(c) or (s, t) in mission.closed_edges or (t, s) in mission.closed_edges
            for s, t, c in zip(*(self._edges[c].to_pylist() for c in ("source", "target", "closed")), strict=True)
        ]
        column = self._edges.schema.get_field_index("closed")
        self._graph = RouteGraph(self._nodes, self._edges.set_column(column, "closed", pa.array(closed)))
        return []

    # Messages.

    def _status(
        self, t_ns: int, detail: str = "", candidates: tuple[str, ...] = (), state: str | None = None
    ) -> MissionStatus:
        mission = self._mission
        target = mission.target
        remaining = math.nan
        here = self.map_pose_at(self._odom_t[-1]) if self._odom_t and target is not None else None
        if here is not None:
            remaining = math.hypot(target.pose[0] - here[0], target.pose[1] - here[1])
        return MissionStatus(
            t_ns=t_ns,
            mission_id=mission.goal.mission_id,
            state=state or mission.state,
            goal_text=mission.goal.text,
            goal_node=target.node_id if target else "",
            goal_label=target.label if target else "",
            goal_room=target.room if target else "",
            distance_remaining_m=remaining,
            candidates=candidates,
            detail=detail,
        )

    def _result(self, fix: LocalizationFix, t_ns: int, trigger: str, latency_s: float) -> LocalizationResult:
        position, orientation = _pose_parts(fix)
        return LocalizationResult(
            t_ns=t_ns,
            frame_id=MAP_FRAME,
            success=fix.success,
            position=position,
            orientation=orientation,
            covariance=tuple(np.asarray(fix.covariance, float).ravel().tolist()),
            confidence=float(fix.confidence),
            inliers=int(fix.inliers),
            candidates=tuple(fix.candidates),
            latency_s=latency_s,
            trigger=trigger,
            reason=fix.reason,
        )

    def _pose_message(self, fix: LocalizationFix, t_ns: int) -> PoseWithCovariance:
        position, orientation = _pose_parts(fix)
        return PoseWithCovariance(
            t_ns, MAP_FRAME, position, orientation, tuple(np.asarray(fix.covariance, float).ravel().tolist())
        )


def _rgb(image: CompressedImage) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image.data)).convert("RGB"))


def _pose_parts(fix: LocalizationFix) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    if fix.map_from_base is None:
        return (math.nan,) * 3, (0.0, 0.0, 0.0, 1.0)
    t = fix.map_from_base.translation
    q = fix.map_from_base.rotation.quat  # xyzw
    return (float(t[0]), float(t[1]), float(t[2])), tuple(float(v) for v in q)


def _agree(a: Pose2, b: Pose2, params: GlobalParams) -> bool:
    close = math.hypot(a[0] - b[0], a[1] - b[1]) <= params.agree_m
    return close and abs(math.degrees(se2.wrap(a[2] - b[2]))) <= params.agree_deg


def _planar(fix: LocalizationFix) -> Pose2:
    position, orientation = _pose_parts(fix)
    return (position[0], position[1], se2.yaw_of(orientation))
