"""Local fakes of the SaaS tocsin talks to: real HTTP servers on 127.0.0.1 built to the documented
contracts, recording every request and scriptable to fail."""
