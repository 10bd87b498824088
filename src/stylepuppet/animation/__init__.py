"""The animation pipeline, one stage per module: networks, targets, start face, state, outputs, render, run."""
