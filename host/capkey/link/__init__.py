"""The device link: everything that talks to a capkey board or simulator.

- :mod:`capkey.link.errors` — link error codes and the exceptions a device call raises;
- :mod:`capkey.link.transport` — frames of link protocol v1 over any ``serial_for_url`` stream;
- :mod:`capkey.link.device` — :class:`~capkey.link.device.Device` (typed commands, keepalive,
  cancel) and discovery of boards on USB and of running simulators;
- :mod:`capkey.link.card` / :mod:`capkey.link.key` — the CAP card and certificate key clients;
- :mod:`capkey.link.pcsc` — a device's CAP card behind pcscd's virtual reader (vpcd);
- :mod:`capkey.link.screen` — the 128x64 framebuffer as PNG.
"""
