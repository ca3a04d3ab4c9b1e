"""The HTTP(S) side of sipxcc: the twisted.web resource tree, auth and rendering."""
