"""Face generators behind one interface, their weight-file readers, and the one loader every command uses."""
