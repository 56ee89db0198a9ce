"""One whole-app test driver.

- ``config``: ONE config writer (``write_config``: a base plus whole sections a test replaces)
  and the sections that wire adapters to the local fakes by base URL;
- ``app``: the app in-process on a virtual clock (``make_app`` / ``start_app`` → ``App``): post
  Alertmanager bodies, move time, read incidents, outbox and timelines;
- ``team``: the team most escalation tests page (``make_team_app``);
- ``payloads``: Alertmanager bodies and the captured samples;
- ``logs``: strictness (an ERROR log line fails the test);
- ``process``: ``tocsin serve`` as a real child process, for tests that need one.

Its fixtures are registered for every test module by ``tests/conftest.py``.
"""
