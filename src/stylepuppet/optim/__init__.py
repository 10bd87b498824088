"""One frame's optimisation: pure loss functions, the objective built from them, and the projector."""
