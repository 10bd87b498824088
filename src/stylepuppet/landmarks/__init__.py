"""Landmark networks of the losses (FAN, MediaPipe mesh), the 68-point scheme and how a net frames a face."""
