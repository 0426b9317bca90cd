"""In-memory fakes of the services' ports, for unit tests of pure logic.

Each fake implements a `Protocol` of the service it stands in for, and runs the same
contract tests as the real adapter (`tests/contracts/`), so it cannot drift from it."""
