"""Devices: where cases run. Each is a :class:`edgebench.contracts.Device` registered by an
entry point (``local``, ``ssh``, ``adb`` in pyproject.toml), one module per job:

- ``local``: the host itself (a subprocess in a private temp dir);
- ``ssh``: a board over SSH: ``ssh_target`` (URI + ``~/.ssh/config``), ``ssh_hostkeys``
  (known_hosts as OpenSSH keeps it), ``ssh_connect`` (opening the connection, channels);
- ``adb``: a phone through the adb server: ``adb_target`` (URI, adb binary, adb's words);
- ``transport``: what SSH and ADB share (URI options, remote command lines, device lock);
- ``shell_agent``: the fingerprint read with the shell alone (devices without Python);
- ``native``: a runtime's own benchmark binary instead of a Python runner (phones), whose
  output ``native_parsers`` reads.
"""
