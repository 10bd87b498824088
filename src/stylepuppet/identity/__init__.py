"""Face identity as dlib measures it, in torch: its face-recognition ResNet read from dlib's own file,
its face-chip framing, and the descriptor distance (same person below 0.6)."""

from stylepuppet.identity.chip import face_chips
from stylepuppet.identity.dlib_resnet import DlibResNet, load_dlib_resnet
from stylepuppet.identity.net import IdentityNet, identity_distance

__all__ = ["DlibResNet", "IdentityNet", "face_chips", "identity_distance", "load_dlib_resnet"]
