"""The browser app (`stylepuppet ui`, optional extra ``stylepuppet[ui]``): see :mod:`stylepuppet.ui.app`."""
