"""Autoscaling on the objective, shown in simulation: servoscope's policy and faithful
re-implementations of the defaults of HPA, KEDA, Knative's KPA and Ray Serve, driven through the
planner's simulator extended to a fleet whose replica count changes over time."""
