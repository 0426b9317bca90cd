"""Contract test suites, one per port: an abstract class of tests that every implementation
of the port must pass. `tests/unit/` runs each against the in-memory fake, and
`tests/component/` against the real adapter on a real server (eventsourcing's abstract test
cases are the model), so a fake can never promise what the real thing does not do."""
