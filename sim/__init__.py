"""MuJoCo simulator: procedural buildings, robot model, sensors, scenarios and the expert driver."""
