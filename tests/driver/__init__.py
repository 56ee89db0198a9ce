"""One whole-app test driver.

- ``config``: ONE config writer (``write_config``: a base plus whole sections a test replaces)
  and the sections that wire adapters to the local fakes by base URL;
- ``app``: the app in-process on a virtual clock (``make_app`` / ``start_app`` → ``App``): post
  Alertmanager bodies, move time, read incidents, outbox and timelines, reach the fakes;
- ``team`` / ``roles``: the people most escalation tests page (``make_team_app``) and one
  person per role for the severity presets (``roles_config``);
- ``payloads``: Alertmanager bodies and the captured samples;
- ``logs``: strictness (an ERROR log line fails the test);
- ``process``: ``tocsin serve`` as a real child process (``ServeProc``, ``procs``,
  ``serve_config``), for tests that need one;
- ``threaded``: fakes on their own event-loop thread, for tests that block on processes.

Its fixtures are registered for every test module by ``tests/conftest.py``.
"""
