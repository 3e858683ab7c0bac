"""Astra-Local: the learned local planner, a small transformer over past occupancy, state and motion that samples
trajectories toward a subgoal, and its baselines (flow matching, diffusion policy, CVAE, ACT, behaviour cloning).

    planner.py    PlannerConfig and LocalPlannerModel      attention.py  trajectory attention, causal masks
    losses.py     the masked ESDF and InfoNCE losses       crops.py      robot-centred crops of grids

Shapes and clocks of the samples are schemas.local_dataset.LocalGeometry's.
"""
